fn main() {
    println!("flightdeck-relay {}", env!("CARGO_PKG_VERSION"));
}
