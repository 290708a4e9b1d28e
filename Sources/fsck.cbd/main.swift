// SPDX-License-Identifier: Apache-2.0
import ArgumentParser
import CBDCLI
import Glibc
import CBDDevice
import CBDVolume
import CBDCheck

/// fsck.cbd: check and repair a CBD device, with the conventions of fsck(8) and e2fsck.
struct Fsck: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fsck.cbd",
        abstract: "Check and repair a compressed block device (CBD).",
        discussion: """
            Exit status (combined by OR): 0 no errors, 1 errors corrected, 4 errors left \
            uncorrected, 8 operational error, 16 usage error, 32 cancelled by the user.
            """,
        version: ToolVersion.line("fsck.cbd"))

    @Flag(name: .customShort("n"), help: "Open read-only, change nothing, answer no to every question.") var no = false
    @Flag(name: .customShort("y"), help: "Fix every problem without asking.") var yes = false
    @Flag(
        name: .customShort("p"),
        help: "Preen: fix what is safe without asking; stop (exit 4) at anything else.") var preen = false
    @Flag(name: .customShort("a"), help: "Same as -p.") var auto = false
    @Flag(name: .customShort("f"), help: "Check even when the device is marked clean.") var force = false
    @Flag(name: .customShort("v"), help: "Verbose: print the geometry and every pass.") var verbose = false
    @Flag(name: .customShort("c"), help: "Also decompress every compressed block.") var verifyData = false
    @Option(
        name: .customShort("C"),
        help: ArgumentHelp("Progress to this file descriptor (0: a bar on the terminal).", valueName: "fd"))
    var progressFD: Int32?
    @Option(
        name: .customLong("lost-found"),
        help: ArgumentHelp(
            "Save orphaned data (held by pblks no entry names) in this folder before freeing it "
                + "(default for an image file: IMAGE.lost+found beside it).", valueName: "dir"),
        completion: .directory) var lostFound: String?
    @Flag(name: .long, help: "Print the result as one JSON object.") var json = false
    @Argument(help: "The device or image file.", completion: .file()) var device: String

    func validate() throws {
        let modes = [no, yes, preen || auto].filter { $0 }.count
        if modes > 1 { throw ValidationError("only one of -n, -y and -p/-a may be given") }
    }

    var mode: Checker.Mode {
        if no { return .readOnly }
        if yes { return .fixAll }
        if preen || auto { return .preen }
        return isatty(0) != 0 ? .interactive : .readOnly
    }

    func run() throws {
        if mode != .readOnly {
            Interrupts.install(tool: "fsck.cbd", message: "interrupted; \(device) left DIRTY: run fsck.cbd again")
        }
        let code = check()
        throw ExitCode(code)
    }

    func check() -> Int32 {
        let mode = self.mode
        let dev: FileDevice
        let checker: Checker
        var output = FsckOutput(device: device, json: json)
        do {
            dev = try FileDevice(path: device, mode: mode == .readOnly ? .readOnly : .readWrite)
            var options = Checker.Options()
            options.mode = mode
            options.verifyData = verifyData
            if mode != .readOnly, let dir = lostFound ?? defaultLostFound(dev) {
                options.lostFound = LostFound(directory: dir)
            }
            options.report = { output.problem($0) }
            options.dirtyReason = FailureNote.read(for: device)
            options.ask = { p in
                output.heading(for: p)
                output.asked = !json
                return askPerson(p)
            }
            let progress = progressHandler()
            options.progress = { pass, done, total in
                if verbose { output.heading(for: pass) }
                progress?(pass, done, total)
            }
            checker = try Checker(device: dev, options: options)
        } catch let failure as HeaderRecovery.Failure {
            output.fatal("\(device): \(failure)")
            for c in failure.candidates { output.note("  \(c.evidence):\n    \(mkfsCommand(c))") }
            if !failure.candidates.isEmpty {
                output.note(
                    "write the header of the right one with the command under it, then run fsck.cbd -f \(device)")
            }
            return 8
        } catch {
            output.fatal(ToolRunner.message(for: error) ?? "\(error)")
            return 8
        }
        if !checker.isDirty && !checker.headerNeedsRepair && !force && mode == .preen {
            output.line("\(device): clean, \(checker.geometry.nrLblk) blocks of \(checker.geometry.lblkSize) bytes")
            output.finishClean()
            return 0
        }
        if verbose && !json { for (k, v) in checker.geometry.summaryLines() { output.line("\(k): \(v)") } }
        do { try checker.run() } catch {
            output.fatal(ToolRunner.message(for: error) ?? "\(error)")
            return 8 | checker.exitCode
        }
        output.finish(checker)
        // A device repaired clean: a server's note of why it stopped is history.
        if mode != .readOnly && !checker.header.isDirty { FailureNote.clear(for: device) }
        return checker.exitCode
    }

    /// The mkfs.cbd -S command that writes the header of a layout the zones fit.
    func mkfsCommand(_ c: HeaderRecovery.Candidate) -> String {
        let g = c.geometry
        return
            "mkfs.cbd -S -b \(g.lblkSize >> 10)K --zone-shift \(g.lblkPerZoneShift) -L \(g.logicalBytes) \(device) \(g.physicalBytes)"
    }

    /// An image file's orphans go beside it (e2fsck always has its lost+found); a block
    /// device's only where --lost-found says, since /dev is no place for them.
    func defaultLostFound(_ dev: FileDevice) -> String? {
        var st = stat()
        guard stat(device, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return nil }
        return device + ".lost+found"
    }

    func progressHandler() -> ((CheckPass, Int, Int) -> Void)? {
        guard let fd = progressFD else { return nil }
        if fd == 0 {
            // A bar only on a terminal: into a pipe or a file it would be a line of \r.
            guard isatty(2) != 0 else { return nil }
            let bar = ProgressBar(label: "\(device)", unit: "zones")
            return { pass, done, total in
                guard pass == .tables || pass == .bitmaps else { return }
                bar.update(done, total)
                if done == total && pass == .bitmaps { bar.finish() }
            }
        }
        // e2fsck's -C format: "pass current max device" per line.
        return { pass, done, total in
            let line = "\(pass.progressNumber) \(done) \(total) \(device)\n"
            _ = line.withCString { Glibc.write(fd, $0, strlen($0)) }
        }
    }

    /// Asks on the terminal, as e2fsck does: the question on standard output (standard error
    /// under --json), the answer typed after it.
    func askPerson(_ p: Problem) -> Checker.Answer {
        while true {
            let question = "\(p.message).  \(p.action)<y>? [y/n/a(ll)/q(uit)] "
            if json { FileHandleStderr.write(question) } else { print(question, terminator: ""); fflush(nil) }
            guard let line = readLine()?.lowercased() else { return .quit }
            switch line.filter({ !$0.isWhitespace }) {
            case "", "y", "yes": return .yes
            case "n", "no": return .no
            case "a", "all": return .all
            case "q", "quit": return .quit
            default: continue
            }
        }
    }
}

StandardOutputCheck.install(tool: "fsck.cbd", status: 8)  // fsck(8): operational error

// fsck(8) wants 16 for a usage error, where ArgumentParser would exit with 64.
do {
    var command = try Fsck.parseAsRoot(ToolVersion.arguments())
    try command.run()
} catch {
    if Fsck.exitCode(for: error) == .validationFailure {
        FileHandleStderr.write(Fsck.fullMessage(for: error) + "\n")
        exit(16)
    }
    Fsck.exit(withError: error)
}
