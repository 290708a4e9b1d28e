// SPDX-License-Identifier: Apache-2.0
import ArgumentParser
import CBDCLI
import CBDFormat
import CBDInspect
import CBDLayout

/// cbd measure: the size cbd convert would make, before making it (as qemu-img measure).
struct Measure: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Estimate the size of the CBD that cbd convert would make of IN.",
        discussion: """
            IN is a raw image, a block device or a CBD (measured as re-blocked and recompressed \
            with -b and --level). By default a sample of blocks spread over IN's data is \
            compressed (1 in 64, 256 to 8192 blocks) and the estimate carries a bound of two \
            standard errors; --exact compresses every block. Holes are never read.
            """)

    @Argument(help: "Input: a raw image, a block device or a CBD.", completion: .file()) var input: String
    @Option(name: [.short, .customLong("block-size")], help: "Logical block size of the output (4K..1G).")
    var blockSize = BlockSizeArgument(argument: "64K")!
    @Option(help: "Compression: 1 fast (default), 2 to 12 LZ4HC.") var level = CompressionLevel.fast
    @Flag(help: "Compress every block for an exact answer.") var exact = false
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var progress: ProgressOption

    func run() throws {
        try ToolRunner.run("cbd", json: json ? input : nil) {
            var m = Measurer()
            m.lblkShift = blockSize.lblkShift
            m.level = level
            m.exact = exact
            let bar = exact ? progress.bar("measure") : nil  // a sample takes a moment only
            m.progress = bar?.handler
            let r = try m.measure(input: LogicalImage.open(input), scratch: ScratchDirectory.path)
            bar?.finish()
            if json {
                print(
                    "{\"logical_size\": \(r.logicalBytes), \"blocks\": \(r.blocks), \"allocated_blocks\": "
                        + "\(r.allocatedBlocks), \"data_size\": \(r.dataBytes), \"data_size_error\": \(r.errorBytes), "
                        + "\"physical_size\": \(r.physicalBytes), \"physical_size_bound\": \(r.physicalBytesBound), "
                        + "\"compression_ratio\": \(String(format2: r.compressionRatio)), \"sampled_blocks\": "
                        + "\(r.sampledBlocks), \"exact\": \(r.exact)}")
                return
            }
            print(
                "logical size:      \(ByteSize.format(r.logicalBytes)) in \(r.blocks) block\(r.blocks == 1 ? "" : "s")")
            print("allocated blocks:  \(r.exact ? "" : "about ")\(r.allocatedBlocks) (the rest are holes or zeros)")
            let error = r.exact ? "exact" : "± \(ByteSize.format(r.errorBytes)), from \(r.sampledBlocks) sampled blocks"
            print("data:              \(ByteSize.format(r.dataBytes)) (\(error))")
            print(
                "physical size:     \(ByteSize.format(r.physicalBytes)) (\(r.physicalBytes) bytes: data and the "
                    + "default headroom, as cbd convert makes it)")
            if !r.exact {
                print("at most:           \(ByteSize.format(r.physicalBytesBound)) (\(r.physicalBytesBound) bytes)")
            }
            print("compression ratio: \(String(format2: r.compressionRatio))")
        }
    }
}
