// SPDX-License-Identifier: Apache-2.0
import ArgumentParser
import CBDCLI
import CBDFormat
import CBDDevice
import CBDVolume
import CBDLayout
import CBDCheck

/// What `cbd convert` writes.
enum OutputKind: String, ExpressibleByArgument, CaseIterable {
    case raw, cbd
}

struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Convert a raw image to a CBD device, a CBD device back to a raw image, or a CBD to a CBD.",
        discussion: """
            By default the direction comes from IN: a valid CBD header converts to raw, anything \
            else converts to CBD (an input whose CBD header is damaged is refused unless --raw is \
            given). --to cbd with a CBD input re-blocks and recompresses it (-b, -s, --level) into \
            a new CBD, reading only its allocated blocks. A CBD output is compact by default: its physical size is what the data \
            needs plus 1/64 (at least 1 MiB) of headroom. A raw output file is sparse; OUT `-` \
            writes the raw image to standard output. An OUT that is a symbolic link is written \
            through.
            """)

    @Argument(help: "Input: a raw image, a CBD image, or a block device.", completion: .file()) var input: String
    @Argument(help: "Output file or block device; - for standard output (CBD to raw only).", completion: .file())
    var output: String
    @Option(
        name: [.short, .customLong("block-size")],
        help: "Logical block size of a CBD output (4K..1G; 4K never compresses).")
    var blockSize = BlockSizeArgument(argument: "64K")!
    @Option(name: [.customShort("s"), .customLong("physical-size")], help: "Physical size of a CBD output.")
    var physicalSize: SizeArgument?
    @Option(
        help: "Compression of a CBD output: 1 fast (default), 2 to 12 LZ4HC (smaller, slower to write; read as fast).")
    var level = CompressionLevel.fast
    @Flag(name: .shortAndLong, help: "Overwrite an existing output file or signatures on a device.") var force = false
    @OptionGroup var progress: ProgressOption
    @Option(
        name: .customShort("E"),
        help: ArgumentHelp(
            "Extended options of a CBD output: resize=SIZE, the logical size it can grow to in place.",
            valueName: "options"))
    var extended: ExtendedOptions?
    @Option(
        help: ArgumentHelp(
            "Memory for blocks in flight (default: a quarter of RAM, at most 1G; never less "
                + "than two blocks).", valueName: "size"))
    var memory: SizeArgument?
    @Flag(name: .shortAndLong, help: "Print nothing but errors.") var quiet = false
    @Flag(help: "Convert IN to CBD as raw data, even if it looks like a CBD device.") var raw = false
    @Option(help: "What to write: raw or cbd (default: the other kind than IN).") var to: OutputKind?
    @Flag(
        help:
            "CBD to raw: write zeros for blocks that cannot be read (malformed entry, corrupt data), name them, and go on."
    )
    var salvage = false

    func validate() throws {
        if progress.progress && quiet { throw ValidationError("--progress and --quiet exclude each other") }
        if salvage && to == .cbd { throw ValidationError("--salvage applies to a conversion to raw") }
    }

    func run() throws {
        try ToolRunner.run("cbd") {
            Interrupts.install(tool: "cbd", message: "interrupted; \(output) not written")
            Interrupts.removeOnInterrupt(OutputFile.temporaryPath(for: output))
            let start = Clock.seconds()
            let inDev = try FileDevice(path: input, mode: .readOnly)
            let inputIsCBD = try direction(of: inDev)
            if to == .raw && !inputIsCBD {
                throw CBDError("\(input): not a CBD device; --to raw converts a CBD device")
            }
            let toRaw = inputIsCBD && to != .cbd
            if salvage && !toRaw { throw CBDError("--salvage applies to a CBD device converted to raw") }
            guard output != "-" || toRaw else {
                throw CBDError(
                    "a CBD device cannot be written to standard output (it is not written in order); "
                        + "give a file or a block device")
            }
            let wipe = try signaturesToWipe()
            let target = OutputFile(path: output, overwrite: force, deviceScratch: ScratchDirectory.path)
            let bar = progress.bar(toRaw ? "cbd → raw" : inputIsCBD ? "cbd → cbd" : "raw → cbd", quiet: quiet)
            if inputIsCBD && !quiet, let opened = try? OpenedDevice(inDev, allowing: .interruptedUpdate),
                opened.header.isDirty
            {
                warn("warning: \(input) was not closed cleanly (DIRTY); check it with fsck.cbd \(input)")
            }
            let summary: ConvertSummary
            if toRaw {
                guard physicalSize == nil else { throw CBDError("--physical-size applies to a CBD output only") }
                guard extended == nil else { throw CBDError("-E applies to a CBD output only") }
                var c = CBDToRaw()
                c.wipeSignatures = wipe
                c.salvage = salvage
                if let m = memory { c.memory = MemoryBudget(bytes: m.bytes) }
                c.progress = bar?.handler
                summary = try c.convert(input: inDev, to: output == "-" ? StreamOutput() : target)
            } else {
                var c = RawToCBD()
                c.lblkShift = blockSize.lblkShift
                if !quiet, let note = Options.blockSizeNote(lblkShift: c.lblkShift) { warn(note) }
                c.physicalBytes = physicalSize?.bytes
                c.growLogicalTo = extended?.resize
                c.level = level
                c.wipeSignatures = wipe
                if let m = memory { c.memory = MemoryBudget(bytes: m.bytes) }
                c.progress = bar?.handler
                // A CBD input is read as its logical device: its unallocated blocks are holes.
                summary = try c.convert(input: inputIsCBD ? LogicalDevice(device: inDev) : inDev, to: target)
            }
            bar?.finish()
            if summary.lostBlocks > 0 {
                reportLosses(summary, blockSize: summary.blocks > 0 ? summary.logicalBytes / summary.blocks : 0)
            }
            if !quiet && output != "-" {
                printSummary(
                    summary, kind: toRaw ? "CBD to raw" : inputIsCBD ? "CBD to CBD" : "raw to CBD",
                    toRaw: toRaw, seconds: Clock.seconds() - start)
            }
        }
    }

    /// Whether IN is a CBD device: a valid CBD header (unless --raw); a damaged one is refused.
    func direction(of inDev: FileDevice) throws -> Bool {
        guard !raw else { return false }
        do {
            return try ImageKind.of(inDev) == .cbd
        } catch var e as CBDError where e.kind == .corrupt {
            e.message += ", or give --raw to convert it as raw data"
            throw e
        }
    }

    /// An existing block device as output: mkfs rules, refuse signatures without -f. True
    /// when there are signatures to wipe (with -f): a CBD output wipes them only once its
    /// data is compressed, so that a conversion failing before leaves the device as it was.
    func signaturesToWipe() throws -> Bool {
        guard FileProbe.isBlockDevice(output) else { return false }
        let dev = try FileDevice(path: output, mode: .readWrite)
        let found = Signatures.probe(fd: dev.fd)
        guard !found.isEmpty else { return false }
        guard force else { throw Options.signatureRefusal(output, found) }
        return true
    }

    /// Salvage: each lost block named once (the first 8), then how many in all.
    func reportLosses(_ s: ConvertSummary, blockSize: Int) {
        for l in s.lost {
            warn(
                "lblk \(l.lblk) (bytes \(l.lblk * blockSize)-\(l.lblk * blockSize + blockSize - 1)) written as zeros: \(l.reason)"
            )
        }
        if s.lostBlocks > s.lost.count { warn("... and \(s.lostBlocks - s.lost.count) more blocks written as zeros") }
        warn(
            "salvage: \(s.lostBlocks) block\(s.lostBlocks == 1 ? "" : "s") lost (written as zeros), the rest converted")
    }

    func printSummary(_ s: ConvertSummary, kind: String, toRaw: Bool, seconds: Double) {
        print("\(input) -> \(output) (\(kind))")
        print(
            "  logical size:       \(ByteSize.format(s.logicalBytes)) in \(s.blocks) "
                + "block\(s.blocks == 1 ? "" : "s")")
        print(
            "  physical size:      \(ByteSize.format(s.physicalBytes)), data "
                + "\(ByteSize.format(s.dataPblks * Units.pblkSize))")
        print(
            "  blocks:             \(s.compressedBlocks) compressed, \(s.rawBlocks) raw, \(s.unallocatedBlocks) "
                + "unallocated")
        print("  compression ratio:  \(String(format2: s.compressionRatio)) (allocated blocks / their pblks)")
        if s.physicalBytes > 0 {
            let provisioning = Double(s.logicalBytes) / Double(s.physicalBytes)
            print("  provisioning ratio: \(String(format2: provisioning)) (logical / physical)")
        }
        if FileProbe.isBlockDevice(OutputFile.target(of: output)) {
            // A device has no holes: what the conversion used of it.
            let used = toRaw ? s.logicalBytes : s.physicalBytes
            print("  output on device:   \(ByteSize.format(used)) used")
        } else {
            let out = FileProbe.allocatedBytes(OutputFile.target(of: output))
            if out >= 0 { print("  output on disk:     \(ByteSize.format(out))") }
        }
        print("  time:               \(String(format2: seconds)) s")
    }
}

/// A line on standard error that does not stop the command.
func warn(_ line: String) { FileHandleStderr.write("cbd: \(line)\n") }
