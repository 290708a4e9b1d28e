// SPDX-License-Identifier: Apache-2.0
import ArgumentParser
import CBDCLI
import CBDInspect

/// cbd compare: the logical contents of two images, raw or CBD, as `qemu-img compare`.
struct Compare: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compare the logical contents of two images (raw images, block devices or CBDs).",
        discussion: """
            Exit status: 0 the same, 1 different (the first differing offset is printed), 2 an \
            error (64 a usage error). Without -s, the part of the larger image past the smaller \
            one's end must read as zeros, and a block of zeros equals a hole.
            """)

    @Argument(help: "First image.", completion: .file()) var first: String
    @Argument(help: "Second image.", completion: .file()) var second: String
    @Flag(name: [.customShort("s"), .long], help: "Strict: the sizes and where data is allocated must match too.")
    var strict = false
    @Flag(name: .shortAndLong, help: "Print nothing; the exit status says.") var quiet = false
    @OptionGroup var progress: ProgressOption

    func run() throws {
        var result = Comparison.Result.same
        try ToolRunner.run("cbd", failure: 2) {
            var c = Comparison()
            c.strict = strict
            let bar = progress.bar("compare", quiet: quiet)
            c.progress = bar?.handler
            result = try c.compare(LogicalImage.open(first), LogicalImage.open(second))
            bar?.finish()
        }
        let line: String
        switch result {
        case .same: line = "Images are identical."
        case .contentDiffers(let off): line = "Content mismatch at offset \(off)!"
        case .sizeDiffers(let a, let b): line = "Strict mode: image size mismatch (\(a) and \(b) bytes)!"
        case .allocationDiffers(let off): line = "Strict mode: offset \(off) block status mismatch!"
        }
        if !quiet { print(line) }
        if result != .same { throw ExitCode(1) }
    }
}
