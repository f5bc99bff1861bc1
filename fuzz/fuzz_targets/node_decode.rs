//! `Node::decode` on arbitrary bytes; a node that decodes must answer every accessor, and one
//! that opens for editing must compact to the same items.
#![no_main]

use arbor_format::{Node, NodeMut, ValueRef};
use libfuzzer_sys::fuzz_target;

fn items(node: &Node<'_>) -> Vec<(Vec<u8>, Vec<u8>)> {
    (0..node.len()).map(|i| (node.key(i).to_vec(), node.value_bytes(i).to_vec())).collect()
}

fuzz_target!(|data: &[u8]| {
    if let Ok(node) = Node::decode_trusted(data) {
        // Only the header is checked: the accessors must still not panic.
        for i in 0..node.len() {
            let _ = (node.search(node.key(i)), node.value(i), node.used_bytes());
        }
    }
    let Ok(node) = Node::decode(data) else { return };
    assert!(node.used_bytes() <= data.len());
    for i in 0..node.len() {
        assert_eq!(node.search(node.key(i)), Ok(i));
        if let ValueRef::Child(child) = node.value(i) {
            assert!(!child.is_null());
            assert_eq!(node.child_index(node.key(i)), i);
        }
    }
    let before = items(&node);
    let mut copy = data.to_vec();
    if let Ok(mut editable) = NodeMut::open(&mut copy) {
        editable.compact();
        let after = Node::decode(&copy).expect("a compacted node decodes");
        assert_eq!(items(&after), before);
    }
});
