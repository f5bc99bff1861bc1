fn main() {
    println!("kv-bench: not yet implemented");
}
