import ArgumentParser
import CBDFormat
struct Cbd: ParsableCommand { func run() throws {} }
Cbd.main()
