fn main() {
    loader::cli::main()
}
