// SPDX-License-Identifier: Apache-2.0
#if canImport(Glibc)
    import Glibc
#endif

/// The target named by CBD_FUZZ_TARGET (default fsck).
let fuzzTarget = getenv("CBD_FUZZ_TARGET").map { String(cString: $0) } ?? "fsck"

#if FUZZING
    /// libFuzzer's entry point.
    @_cdecl("LLVMFuzzerTestOneInput")
    public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
        FuzzTargets.run(fuzzTarget, UnsafeRawBufferPointer(start: data, count: size))
        return 0
    }

    @_silgen_name("LLVMFuzzerRunDriver")
    func LLVMFuzzerRunDriver(
        _ argc: UnsafeMutablePointer<CInt>,
        _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
        _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
    ) -> CInt

    /// SwiftPM enters an executable through `<module>_main`; hand control to libFuzzer's driver.
    @_cdecl("cbd_fuzz_main")
    public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
        var count = argc
        var args = argv
        return LLVMFuzzerRunDriver(&count, &args) { data, size in fuzzOne(data, size) }
    }
#else
    /// Replays inputs (files) through a target: how crashes found by fuzzing are re-run as tests.
    @main
    struct Replay {
        static func main() {
            for path in CommandLine.arguments.dropFirst() {
                guard let f = fopen(path, "rb") else { continue }
                var bytes: [UInt8] = []
                var chunk = [UInt8](repeating: 0, count: 65536)
                while true {
                    let n = fread(&chunk, 1, chunk.count, f)
                    if n <= 0 { break }
                    bytes += chunk[0..<n]
                }
                fclose(f)
                bytes.withUnsafeBytes { FuzzTargets.run(fuzzTarget, $0) }
            }
        }
    }
#endif
