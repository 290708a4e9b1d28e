// SPDX-License-Identifier: Apache-2.0
import ArgumentParser
import CBDCLI
import CBDFormat
import Glibc
import CBDDevice
import CBDVolume
import CBDLayout
import CBDCheck

/// cbd serve: the device over NBD, through nbdkit and the cbd plugin, so that any NBD client
/// (nbdcopy, nbdfuse, qemu, qemu-img, nbd-client) uses it live.
struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve the logical device over NBD (nbdkit with the cbd plugin).",
        discussion: """
            Prints the NBD URI to connect to, then serves in the foreground (this process \
            becomes nbdkit: `cbd serve ... &` then `kill $!` works), logging to stderr; --fork \
            goes to the background once the socket listens, logging to syslog. --pid-file \
            names the serving process in both modes. With --run, nbdkit's captive \
            mode: CMD runs with $uri set, the server stops when it ends, and the exit status \
            is CMD's. Without --socket or --port, a Unix socket beside nothing is used for \
            --run, and TCP port 10809 on 127.0.0.1 otherwise. A stale --socket file (nothing \
            listens) is replaced; a live one is refused; the socket is removed at a clean stop. \
            SIGINT or SIGTERM stop the server \
            cleanly: everything is committed and the device marked clean; a stop that could not \
            store every acknowledged write exits 1. A device not closed \
            cleanly (DIRTY) is served read-only only. A write that does not fit fails with \
            ENOSPC and changes nothing; every write that succeeded is kept. cbd info shows the \
            live use of a served device, the serving process and its URI. Started by systemd's \
            socket activation (LISTEN_FDS, cbd-serve@.socket), it serves on the socket passed; \
            --socket may name only that one.
            """)

    @Argument(help: "CBD device or image.", completion: .file()) var device: String
    @Flag(name: [.customShort("r"), .customLong("readonly")], help: "Serve read-only.") var readOnly = false
    @Option(help: ArgumentHelp("Listen on this Unix socket.", valueName: "path"), completion: .file())
    var socket: String?
    @Option(help: ArgumentHelp("Listen on this TCP port of 127.0.0.1.", valueName: "n")) var port: Int?
    @Option(
        name: .customLong("run"),
        help: ArgumentHelp(
            "Run CMD with $uri set; stop the server when it ends (its exit status is ours).",
            valueName: "cmd"))
    var command: String?
    @Option(help: ArgumentHelp("Logical block cache of the server.", valueName: "size")) var cache: SizeArgument?
    @Option(help: ArgumentHelp("Compression of written blocks: 1 fast (default), 2 to 12 LZ4HC.", valueName: "n"))
    var level: CompressionLevel?
    @Flag(
        name: .customLong("no-background-commit"),
        help: "Commit only when the cache is full, on flush and at the stop (default: from a quarter dirty on).")
    var noBackgroundCommit = false
    @Flag(help: "Go to the background once the socket listens (log to syslog).") var fork = false
    @Option(
        name: .customLong("pid-file"),
        help: ArgumentHelp("Write the serving process's pid to FILE.", valueName: "file"),
        completion: .file()) var pidFile: String?
    @Flag(help: .hidden) var foreground = false
    @Option(
        help: ArgumentHelp(
            "Requests served at once per connection (nbdkit's --threads; default: the number of "
                + "cores).", valueName: "n"))
    var threads: Int?
    @Option(
        name: .customLong("low-water"),
        help: ArgumentHelp(
            "Log a warning in nbdkit's log when free space falls below PERCENT of the data pblks.",
            valueName: "percent"))
    var lowWater = 10

    func validate() throws {
        if socket != nil && port != nil { throw ValidationError("--socket and --port exclude each other") }
        if let p = port, !(1...65535).contains(p) { throw ValidationError("--port must be 1 to 65535") }
        if !(0...100).contains(lowWater) { throw ValidationError("--low-water must be 0 to 100 (percent)") }
        if fork && (foreground || command != nil) { throw ValidationError("--fork excludes --foreground and --run") }
        if let t = threads, !(1...1024).contains(t) { throw ValidationError("--threads must be 1 to 1024") }
    }

    func run() throws {
        try ToolRunner.run("cbd") {
            guard let nbdkit = Executables.find("nbdkit") else {
                throw CBDError("nbdkit is not installed: install the package nbdkit (apt-get install nbdkit)")
            }
            let plugin = try Serve.plugin(nbdkit: nbdkit)
            // Refuse here what the plugin would refuse in nbdkit's log, with the tools' words.
            _ = try OpenedDevice(try FileDevice(path: device, mode: .readOnly), allowing: .interruptedUpdate)
            var args = [nbdkit]
            if readOnly { args.append("-r") }
            let uri: String?
            let activation = SocketActivation.inherited()
            if let a = activation {
                try Serve.check(activation: a, socket: socket, others: port != nil || fork || command != nil)
                uri = a.path.map(SocketPath.uri)
            } else if let s = socket {
                try SocketPath.claim(s)
                args += ["-U", s]
                uri = SocketPath.uri(s)
            } else if let p = port {
                args += ["-i", "127.0.0.1", "-p", String(p)]
                uri = "nbd://127.0.0.1:\(p)"
            } else if command != nil {
                args += ["-U", "-"]
                uri = nil
            } else {
                args += ["-i", "127.0.0.1", "-p", "10809"]
                uri = "nbd://127.0.0.1:10809"
            }
            if !fork && activation == nil { args.append("-f") }
            // nbdkit's default, 16 threads a connection, on a machine of a few cores makes the
            // slowest requests wait behind the others' decompression: the 99th percentile of
            // 4 KiB random reads was 20 ms with 16 threads, 5 ms with 2, at the same IOPS.
            args += ["-t", String(threads ?? max(2, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))))]
            if let p = pidFile { args += ["-P", p] }
            if let cmd = command { args += ["--run", cmd] }
            args += [plugin, "file=\(device)"]
            if let u = uri { args.append("uri=\(u)") }
            if let s = socket, activation == nil { args.append("socket=\(s)") }
            if let p = pidFile { args.append("pidfile=\(p)") }
            if let c = cache { args.append("cache=\(c.bytes)") }
            if let l = level { args.append("level=\(l)") }
            if noBackgroundCommit { args.append("background=false") }
            args.append("lowwater=\(lowWater)")
            if readOnly { args.append("readonly=true") }
            if let u = uri { FileHandleStderr.write("cbd: serving \(device) at \(u)\n") }
            try Executables.exec(args)
        }
    }

    /// A server started by systemd's socket activation listens on the socket systemd passed:
    /// --socket may only name that same socket (so that one unit serves with or without
    /// cbd-serve@.socket), and --port, --fork and --run do not apply.
    static func check(activation: SocketActivation, socket: String?, others: Bool) throws {
        if others {
            throw CBDError(
                "started by socket activation (LISTEN_FDS): the socket comes from systemd; "
                    + "--port, --fork and --run do not apply")
        }
        if let s = socket, let passed = activation.path, s != passed {
            throw CBDError("--socket \(s) is not the socket systemd passed (\(passed))")
        }
    }

    /// The plugin: beside this program in the build folder, or in PREFIX/lib/nbdkit/plugins
    /// beside PREFIX/bin (make install), or in nbdkit's own plugin folder (`nbdkit
    /// --dump-config`: make install PREFIX=/usr, the .deb).
    static func plugin(nbdkit: String) throws -> String {
        let dir = Executables.ownDirectory()
        let config = Executables.output(of: "'\(nbdkit)' --dump-config 2>/dev/null") ?? ""
        let pluginDir =
            config.split(separator: "\n").first { $0.hasPrefix("plugindir=") }
            .map { String($0.dropFirst("plugindir=".count)) } ?? "/usr/lib/nbdkit/plugins"
        let candidates = [
            "\(dir)/libnbdkit-cbd-plugin.so",
            "\(dir)/../lib/nbdkit/plugins/nbdkit-cbd-plugin.so",
            "\(pluginDir)/nbdkit-cbd-plugin.so"
        ]
        guard let found = candidates.first(where: { access($0, R_OK) == 0 }) else {
            throw CBDError(
                "the cbd nbdkit plugin is not installed (looked for \(candidates[0]) and in nbdkit's "
                    + "plugin folder)")
        }
        return found
    }
}
