// SPDX-License-Identifier: Apache-2.0
import ArgumentParser
import CBDCLI
import CBDFormat
import CBDDevice
import CBDLayout
import Glibc

struct Resize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Grow or shrink a CBD device, physical and logical (like resize2fs).",
        discussion: """
            SIZE is the new physical size: absolute (10G), or relative (+1G, or -- -512M: a negative \
            size comes after --, or it would read as options); by default \
            the whole underlying file or device. A resize that changes the layout of every zone \
            (the pblk count crosses 2^16 or 2^32, or the logical size needs more entries per zone; \
            cbd info says how far a device grows without one) writes an image file anew beside \
            itself and renames it over the old one (a crash leaves the old file); a block device \
            is rewritten in place, which needs -z UNDO_FILE; `cbd undo` restores from it.
            """)

    @Argument(help: "CBD device or image.", completion: .file()) var device: String
    @Argument(help: "New physical size: N, +N or -N (put -- before a negative size; also -s).")
    var size: RelativeSize?
    @Option(
        name: [.customShort("s"), .customLong("physical-size")], parsing: .unconditional,
        help: "New physical size: N, +N or -N.")
    var physicalSize: RelativeSize?
    @Option(
        name: [.customShort("L"), .customLong("logical-size")], parsing: .unconditional,
        help: "New logical size: N, +N or -N.")
    var logicalSize: RelativeSize?
    /// The old spelling of -L.
    @Option(name: .customLong("logical"), parsing: .unconditional, help: .hidden) var logicalOld: RelativeSize?
    @Flag(name: .customShort("M"), help: "Shrink to the minimum size that holds the data.") var minimum = false
    @Flag(name: .customShort("P"), help: "Print the minimum size and change nothing.") var printMinimum = false
    @Flag(
        name: [.customShort("p"), .customLong("progress")],
        help: "Print each step, and show a progress bar even when stderr is not a terminal.") var progress = false
    @Flag(name: .customShort("f"), help: "Resize even a device not cleanly closed (DIRTY).") var force = false
    @Flag(name: .shortAndLong, help: "Print nothing but errors (as the other writers' -q).") var quiet = false
    @Option(
        name: .customShort("z"),
        help: ArgumentHelp(
            "Undo file (must not exist): save every pblk before the resize overwrites it.",
            valueName: "undo-file"), completion: .file()) var undoFile: String?

    var newSize: RelativeSize? { size ?? physicalSize }
    var logical: RelativeSize? { logicalSize ?? logicalOld }

    func validate() throws {
        if size != nil && physicalSize != nil { throw ValidationError("give the physical size once: SIZE or -s") }
        if logicalSize != nil && logicalOld != nil { throw ValidationError("give the logical size once") }
        if minimum && newSize != nil { throw ValidationError("-M and SIZE exclude each other") }
        if printMinimum && (minimum || newSize != nil) { throw ValidationError("-P changes nothing: give it alone") }
        if quiet && (progress || printMinimum) { throw ValidationError("-q excludes -p and -P") }
    }

    func run() throws {
        try ToolRunner.run("cbd") {
            let dev = try FileDevice(path: device, mode: printMinimum ? .readOnly : .readWrite)
            let resizer = try Resizer(device: dev, force: force || printMinimum)
            let g = resizer.geometry
            let newLogical =
                try logical.map { try $0.resolve(current: g.logicalBytes, name: "logical size") }
                ?? g.logicalBytes
            if printMinimum {
                let m = try resizer.minimum(logicalBytes: newLogical)
                print(
                    "Estimated minimum size of the device: \(m.new.physicalBytes) bytes "
                        + "(\(ByteSize.format(m.new.physicalBytes)))"
                        + (m.keepsGeometry
                            ? ""
                            : ", with a new layout (\(m.new.variantName))"
                                + (resizer.rewritesFile(m, undoPath: nil) ? ", written as a new file" : "; needs -z")))
                return
            }
            let plan: Resizer.Plan
            if minimum {
                plan = try resizer.minimum(logicalBytes: newLogical)
            } else {
                let physical = try newSize.map { try $0.resolve(current: g.physicalBytes, name: "size") } ?? dev.size
                plan = try resizer.plan(physicalBytes: physical, logicalBytes: newLogical)
            }
            if let u = undoFile, access(u, F_OK) == 0 {
                throw CBDError("\(u): undo file already exists; give a new name")
            }
            if plan.new == plan.old {
                if quiet { return }
                print(
                    "\(device): already \(ByteSize.format(g.physicalBytes)) physical, "
                        + "\(ByteSize.format(g.logicalBytes)) logical; nothing to do")
                return
            }
            let newFile = resizer.rewritesFile(plan, undoPath: undoFile)
            if newFile {
                Interrupts.install(
                    tool: "cbd",
                    message: "interrupted; \(device) unchanged (the new layout was not "
                        + "renamed into place)")
                Interrupts.removeOnInterrupt(OutputFile.temporaryPath(for: device))
            } else {
                Interrupts.install(
                    tool: "cbd",
                    message: undoFile == nil
                        ? "interrupted; \(device) left DIRTY: check it with fsck.cbd \(device)"
                        : "interrupted; restore \(device) with: cbd undo \(undoFile ?? "") \(device)")
            }
            if progress {
                let how =
                    plan.keepsGeometry
                    ? "keeping the layout"
                    : newFile
                        ? "re-layout of every zone into a new file, renamed over the old one"
                        : "re-layout of every zone (undo file \(undoFile ?? "-"))"
                print("\(device): \(how)")
            }
            let bar =
                ProgressBar.enabled(force: progress, quiet: quiet) ? ProgressBar(label: "resize", unit: "blocks") : nil
            resizer.progress = bar?.handler
            try resizer.resize(plan, undoPath: undoFile, scratch: OutputFile.directory(of: undoFile ?? device))
            bar?.finish()
            if quiet { return }
            print(
                "\(device): resized to \(ByteSize.format(plan.new.physicalBytes)) physical "
                    + "(\(plan.new.nrPblk) pblks, \(plan.new.nrZones) zones, \(plan.new.variantName)), "
                    + "\(ByteSize.format(plan.new.logicalBytes)) logical")
        }
    }
}

struct UndoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "undo", abstract: "Restore a device from the undo file of a resize (like e2undo).")
    @Argument(help: "The undo file written by cbd resize -z.", completion: .file()) var undoFile: String
    @Argument(help: "The device or image to restore.", completion: .file()) var device: String
    @Flag(name: .shortAndLong, help: "Apply even to a device that does not match the undo file.") var force = false
    @OptionGroup var progress: ProgressOption

    func run() throws {
        try ToolRunner.run("cbd") {
            let dev = try FileDevice(path: device, mode: .readWrite)
            Interrupts.install(tool: "cbd", message: "interrupted; run the same cbd undo again to finish")
            let bar = progress.bar("undo", unit: "pblks")
            let r = try Undo.apply(undoPath: undoFile, to: dev, force: force, progress: bar?.handler)
            bar?.finish()
            if r.alreadyApplied {
                print("\(device): \(undoFile) was already applied; the device is as it restored it")
                return
            }
            print(
                "\(device): restored \(r.restored) pblks from \(undoFile)"
                    + (r.skipped > 0
                        ? " (\(r.skipped) records never synced were skipped: their pblks were never "
                            + "overwritten)" : ""))
        }
    }
}

/// A size that may be relative: `N`, `+N` or `-N`.
struct RelativeSize: ExpressibleByArgument {
    let sign: Int
    let bytes: Int
    let text: String

    init?(argument: String) {
        sign = argument.first == "+" ? 1 : argument.first == "-" ? -1 : 0
        guard let v = ByteSize.parse(sign == 0 ? argument : String(argument.dropFirst())) else { return nil }
        bytes = v
        text = argument
    }

    /// The size against `current`.
    func resolve(current: Int, name: String) throws -> Int {
        let r = sign == 0 ? bytes : current + sign * bytes
        guard r > 0 else { throw CBDError("\(name) '\(text)' leaves nothing") }
        return r
    }
}
