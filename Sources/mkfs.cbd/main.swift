// SPDX-License-Identifier: Apache-2.0
import ArgumentParser
import CBDCLI
import CBDFormat
import CBDDevice
import CBDLayout

/// mkfs.cbd DEVICE [SIZE]: create an empty compressed block device.
struct Mkfs: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mkfs.cbd",
        abstract: "Create a compressed block device (CBD) on a block device or an image file.",
        discussion: """
            SIZE is the physical size to use (default: the whole device or file). Sizes take \
            the suffixes of util-linux: K M G T P E (or KiB...) for powers of 1024, kB MB GB TB \
            for powers of 1000. An image file that does not exist is created (sparse) \
            when SIZE is given. Exit status: 0 on success, 1 on failure, 64 on a usage error.
            """,
        version: ToolVersion.line("mkfs.cbd"))

    @Argument(help: "Block device or image file.", completion: .file()) var device: String
    @Argument(help: "Physical size to use, e.g. 1G (also -s).") var size: SizeArgument?
    @Option(name: [.customShort("s"), .customLong("physical-size")], help: "Physical size to use.")
    var physicalSize: SizeArgument?
    @Option(
        name: [.customShort("L"), .customLong("logical-size")],
        help: "Logical size of the device (default: provisioning ratio x physical).")
    var logicalSize: SizeArgument?
    /// The old spelling of -L (before -l meant a length elsewhere).
    @Option(name: .customShort("l"), help: .hidden) var logicalSizeOld: SizeArgument?
    @Option(
        name: .shortAndLong,
        help: "Provisioning ratio: the logical size as a multiple of the physical size (default 3).")
    var ratio: Double?
    @Option(
        name: [.short, .customLong("block-size")],
        help: "Logical block size, a power of two from 4K to 1G (4K never compresses).")
    var blockSize = BlockSizeArgument(argument: "64K")!
    @Flag(name: .shortAndLong, help: "Overwrite existing filesystem or partition signatures.") var force = false
    @Flag(
        name: [.customShort("n"), .customLong("dry-run")],
        help: "Print the geometry; write nothing.") var dryRun = false
    @Flag(
        name: .customShort("S"),
        help: ArgumentHelp(
            "Write only the header, for the geometry given, and mark the device DIRTY; run fsck.cbd after "
                + "(as mke2fs -S: for a device whose header is destroyed).")) var headerOnly = false
    @Option(
        name: .customLong("zone-shift"),
        help: ArgumentHelp(
            "lblk_per_zone_shift of the header (default: the one mkfs would choose).", valueName: "n"))
    var zoneShift: Int?
    @Option(
        name: .customShort("E"),
        help: ArgumentHelp(
            "Extended options: resize=SIZE, the logical size the device can grow to in place (its tables are "
                + "sized for it).", valueName: "options"))
    var extended: ExtendedOptions?
    @Flag(name: .shortAndLong, help: "Print nothing but errors.") var quiet = false
    @Flag(name: .shortAndLong, help: "Print every zone's layout.") var verbose = false

    /// The layout mkfs chooses; with -E resize=, planned for that logical size and holding
    /// this one (the same zones and tables). A refusal names the device: the sizes alone do
    /// not say which.
    func plan(physical: Int, logical: Int, lblkShift: Int) throws -> Geometry {
        let lblkSize = Units.pblkSize << lblkShift
        let target = max(logical, extended?.resize.map { ($0 + lblkSize - 1) / lblkSize * lblkSize } ?? 0)
        do {
            let planned = try LayoutPlanner.plan(physicalBytes: physical, logicalBytes: target, lblkShift: lblkShift)
            return target == logical ? planned : try LayoutPlanner.holding(logicalBytes: logical, in: planned)
        } catch var e as CBDError {
            e.message = "\(device): " + e.message
            throw e
        }
    }

    func validate() throws {
        if size != nil && physicalSize != nil { throw ValidationError("give the physical size once: SIZE or -s") }
        if logicalSize != nil && logicalSizeOld != nil { throw ValidationError("give the logical size once") }
        if (logicalSize ?? logicalSizeOld) != nil && ratio != nil {
            throw ValidationError(
                "--logical-size and --ratio "
                    + "exclude each other")
        }
        if let r = ratio, !(r > 0 && r.isFinite) { throw ValidationError("--ratio must be a positive number") }
        if quiet && verbose { throw ValidationError("--quiet and --verbose exclude each other") }
        if zoneShift != nil && !headerOnly { throw ValidationError("--zone-shift goes with -S") }
        if let z = zoneShift, !(0...Units.maxLblkPerZoneShift).contains(z) {
            throw ValidationError("--zone-shift must be from 0 to \(Units.maxLblkPerZoneShift)")
        }
    }

    func run() throws {
        try ToolRunner.run("mkfs.cbd") { try make() }
    }

    func make() throws {
        let lblkShift = blockSize.lblkShift
        let requested = (size ?? physicalSize)?.bytes
        let exists = FileProbe.exists(device)
        if !exists && requested == nil {
            throw CBDError("\(device): does not exist (give a SIZE to create an image file)")
        }
        if !dryRun {
            Interrupts.install(tool: "mkfs.cbd", message: "interrupted; \(device) not formatted")
            if !exists { Interrupts.removeOnInterrupt(device) }
        }
        // Open: create a missing image; a dry run never writes.
        let dev: FileDevice? =
            dryRun && !exists
            ? nil
            : try FileDevice(path: device, mode: dryRun ? .readOnly : .readWrite, createSize: requested)
        let created = !exists && dev != nil
        do {
            try format(dev, requested: requested, lblkShift: lblkShift)
            Interrupts.keep(device)
        } catch {
            if created { FileProbe.remove(device) }
            throw error
        }
    }

    func format(_ dev: FileDevice?, requested: Int?, lblkShift: Int) throws {
        let physical = requested ?? dev?.size ?? 0
        if let d = dev, physical > d.size, d.isBlockDevice {
            throw CBDError(
                "\(device): size \(ByteSize.format(physical)) is larger than the device "
                    + "(\(ByteSize.format(d.size)))")
        }
        let lblkSize = Units.pblkSize << lblkShift
        let usable = min(physical / Units.pblkSize, Int(Units.maxPblks)) * Units.pblkSize
        let logical: Int
        if let l = logicalSize ?? logicalSizeOld {
            logical = l.bytes
        } else {
            let v = Double(usable) * (ratio ?? 3)
            guard v < 9e18 else { throw CBDError("ratio \(ratio ?? 3) gives a logical size too large") }
            logical = Int(v) / lblkSize * lblkSize
        }
        let g =
            try zoneShift.map {
                try Geometry(
                    nrPblk: usable / Units.pblkSize, lblkShift: lblkShift, lblkPerZoneShift: $0,
                    nrLblk: logical / lblkSize)
            } ?? plan(physical: physical, logical: logical, lblkShift: lblkShift)
        if headerOnly { return try writeHeaderOnly(dev, g) }

        var refusal: Error?
        if let d = dev {
            let found = Signatures.probe(fd: d.fd)
            // A dry run shows what it would wipe (and that -f is needed) instead of refusing.
            if !found.isEmpty && !force {
                refusal = Options.signatureRefusal(device, found)
                if !dryRun, let refusal { throw refusal }
            }
            if !found.isEmpty && !quiet {
                print(
                    "\(dryRun ? "Would wipe" : "Wiping") \(found.map(\.description).joined(separator: ", "))"
                        + (dryRun && !force ? " (needs -f)" : ""))
            }
            if !found.isEmpty && !dryRun { try Signatures.wipe(device: d) }
        }
        if !quiet { printSummary(g) }
        if !quiet, let note = Options.blockSizeNote(lblkShift: lblkShift) { print(note) }
        guard !dryRun, let d = dev else {
            if !quiet { print("Dry run: nothing written.") }
            // The run itself would stop here: the dry run says so and exits as it would.
            if let refusal { throw refusal }
            return
        }
        if physical > d.size { try d.setSize(physical) }
        try Formatter.format(d, geometry: g)
        if !quiet { print("Wrote \(plural(g.nrZones, "zone")) and the header.") }
    }

    /// -S: the header alone, DIRTY, over whatever pblk 0 holds (a valid header only with -f).
    func writeHeaderOnly(_ dev: FileDevice?, _ g: Geometry) throws {
        guard let d = dev else { throw CBDError("\(device): does not exist") }
        try Formatter.checkHeaderOnly(d, geometry: g, replace: force)
        if !quiet { printSummary(g) }
        guard !dryRun else { if !quiet { print("Dry run: nothing written.") }; return }
        try Formatter.writeHeaderOnly(d, geometry: g, replace: force)
        if !quiet { print("Wrote the header only (marked DIRTY): run fsck.cbd -f \(device)") }
    }

    func printSummary(_ g: Geometry) {
        print("Creating a CBD device on \(device)")
        for (k, v) in g.summaryLines() {
            print("  \(k + ":")\(String(repeating: " ", count: max(1, 22 - k.count)))\(v)")
        }
        if verbose {
            for z in 0..<g.nrZones {
                print(
                    "  zone \(z): bitmap \(g.bitmapPblk(z)), table "
                        + "\(g.tablePblks(z).lowerBound)-\(g.tablePblks(z).upperBound - 1), data "
                        + "\(g.dataStart(z))-\(g.dataEnd(z) - 1)")
            }
        }
    }
}

StandardOutputCheck.install(tool: "mkfs.cbd")
Mkfs.main(ToolVersion.arguments())
