// SPDX-License-Identifier: Apache-2.0
import ArgumentParser
import CBDCLI
import CBDFormat
import CBDDevice
import CBDVolume
import CBDLayout
import CBDCheck

/// cbd image --metadata: a device's metadata without its data, for bug reports (e2image -r).
struct ImageCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "image",
        abstract: "Write a metadata image of a device (header, bitmaps, tables; data as holes) for a bug report.",
        discussion: """
            OUT is a sparse file of the device's physical size holding its header, every bitmap \
            and table pblk that holds data, and an interrupted update's journal; its data pblks \
            are holes, so no content leaves the device. fsck.cbd -fn reports the same structural \
            problems on it; its data reads as zeros, so -c calls its compressed blocks corrupt. \
            The format has no mark for such an image: name it so (e.g. dev.cbd.meta).
            """)

    @Argument(help: "CBD device or image.", completion: .file()) var device: String
    @Argument(help: "Output file.", completion: .file()) var output: String
    /// The kinds of image (one so far): a flag without a default, so help shows it required.
    enum Kind: String, EnumerableFlag {
        case metadata
        static func help(for value: Kind) -> ArgumentHelp? { "Metadata only (the one kind of image there is)." }
    }

    @Flag var kind: Kind
    @Flag(name: .shortAndLong, help: "Replace an existing output file.") var force = false
    @OptionGroup var progress: ProgressOption

    func run() throws {
        try ToolRunner.run("cbd") {
            guard !FileProbe.isBlockDevice(OutputFile.target(of: output)) else {
                throw CBDError("\(output): a metadata image is a sparse file, not a block device")
            }
            Interrupts.install(tool: "cbd", message: "interrupted; \(output) not written")
            Interrupts.removeOnInterrupt(OutputFile.temporaryPath(for: output))
            let dev = try FileDevice(path: device, mode: .readOnly)
            var image = MetadataImage()
            let bar = progress.bar("image", unit: "zones")
            image.progress = bar?.handler
            let opened: OpenedDevice
            do { opened = try OpenedDevice.recovering(dev) } catch let failure as HeaderRecovery.Failure {
                throw CBDError("\(device): \(failure); fsck.cbd \(device) says more")
            }
            let s = try image.write(from: opened, to: OutputFile(path: output, overwrite: force))
            bar?.finish()
            print(
                "\(device) -> \(output): \(s.metadataPblks) metadata pblks "
                    + "(\(ByteSize.format(s.metadataPblks * Units.pblkSize))) of \(ByteSize.format(s.physicalBytes))")
        }
    }
}
