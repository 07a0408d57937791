fn main() {
    println!("flightdeck-agent {}", env!("CARGO_PKG_VERSION"));
}
