//! How keys and values are written on the command line and shown (`get`, `scan`, the text
//! and JSON-lines dumps).
//!
//! * Arguments (KEY, `--prefix`, `--from`, `--to`) are taken as UTF-8 text, or with `--hex`
//!   as hexadecimal (`00ff`, an optional `0x` prefix, any case).
//! * Text output shows bytes as they are when they are UTF-8 with no control characters and
//!   do not start with `0x`; anything else is shown as `0x` followed by lowercase hex. So a
//!   shown key or value starting with `0x` is always hex, and no shown one holds a tab or a
//!   newline (the separators).
//! * JSON output uses the same rule, naming the encoding in the field: `"key": "alice"` or
//!   `"key_hex": "00ff"` (likewise `value`/`value_hex`).

use serde_json::{Map, Value};

use crate::error::{CliError, Result};

fn is_plain(bytes: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(bytes).ok()?;
    let plain = !text.starts_with("0x") && !text.chars().any(char::is_control);
    plain.then_some(text)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `alice`, or `0x00ff` for bytes that are not plain text.
pub fn text(bytes: &[u8]) -> String {
    match is_plain(bytes) {
        Some(t) => t.to_string(),
        None => format!("0x{}", hex(bytes)),
    }
}

/// Adds `name: "text"` or `name_hex: "00ff"` to a JSON object.
pub fn put_json(obj: &mut Map<String, Value>, name: &str, bytes: &[u8]) {
    match is_plain(bytes) {
        Some(t) => obj.insert(name.to_string(), Value::from(t)),
        None => obj.insert(format!("{name}_hex"), Value::from(hex(bytes))),
    };
}

/// A key or value given on the command line (see the module comment).
pub fn parse_arg(arg: &str, as_hex: bool, what: &str) -> Result<Vec<u8>> {
    if !as_hex {
        return Ok(arg.as_bytes().to_vec());
    }
    let digits = arg.strip_prefix("0x").or_else(|| arg.strip_prefix("0X")).unwrap_or(arg);
    let bad = || CliError::new(format!("{what} {arg:?} is not hexadecimal (--hex)"));
    if !digits.len().is_multiple_of(2) {
        return Err(bad());
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| digits.get(i..i + 2).and_then(|d| u8::from_str_radix(d, 16).ok()).ok_or_else(bad))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_hex() {
        assert_eq!(text(b"alice"), "alice");
        assert_eq!(text(b""), "");
        assert_eq!(text(&[0, 255]), "0x00ff");
        assert_eq!(text(b"a\tb"), "0x610962");
        assert_eq!(text(b"0x12"), "0x30783132");
        assert_eq!(text("caf\u{e9}".as_bytes()), "caf\u{e9}");
        assert_eq!(parse_arg("0x00FF", true, "key").unwrap(), vec![0, 255]);
        assert_eq!(parse_arg("", true, "key").unwrap(), Vec::<u8>::new());
        assert!(parse_arg("abc", true, "key").is_err());
        assert!(parse_arg("zz", true, "key").is_err());
        assert!(parse_arg("\u{e9}9", true, "key").is_err());
        assert_eq!(parse_arg("0x00", false, "key").unwrap(), b"0x00".to_vec());
        let mut obj = Map::new();
        put_json(&mut obj, "key", &[1]);
        put_json(&mut obj, "value", b"v");
        assert_eq!(Value::Object(obj).to_string(), r#"{"key_hex":"01","value":"v"}"#);
    }
}
