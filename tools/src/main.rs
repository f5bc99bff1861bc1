fn main() {
    println!("arbor: not yet implemented");
}
