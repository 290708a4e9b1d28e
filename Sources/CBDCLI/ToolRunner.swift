// SPDX-License-Identifier: Apache-2.0
import ArgumentParser
import CBDFormat

/// How every tool turns a library error into one line on standard error and an exit status.
public enum ToolRunner {
    /// Runs a tool's body; a library error becomes `tool: message` and exit status `failure`
    /// (1, or 2 where 1 is an answer, as for `cbd compare`).
    /// With `json` (the subject: the device or input named), a script that asked for JSON gets
    /// JSON on failure too: one error object on standard output, as fsck.cbd --json prints.
    public static func run(
        _ tool: String, failure: Int32 = 1, json subject: String? = nil,
        _ body: () throws -> Void
    ) throws {
        do { try body() } catch {
            guard let line = message(for: error) else { throw error }
            if let subject { print(JSON.line(["device": subject, "error": line, "exit_code": Int(failure)])) }
            FileHandleStderr.write("\(tool): \(line)\n")
            throw ExitCode(failure)
        }
    }

    /// The line for an error the library threw (nil for anything else, e.g. ArgumentParser's own).
    public static func message(for error: Error) -> String? {
        switch error {
        case let e as CBDError: return e.message + (e.hint.map(advice) ?? "")
        case let e as SizeError: return e.render(ByteSize.format)
        default: return nil
        }
    }

    /// What the user can do, in the tools' own options.
    static func advice(_ hint: CBDError.Hint) -> String {
        switch hint {
        case .overwrite: return "; use -f to overwrite"
        case .checkOrForce: return "; run fsck.cbd first, or use -f"
        case .check: return "; run fsck.cbd first"
        case .undoFile: return ": give -z UNDO_FILE to allow it"
        case .force: return "; use -f to override"
        case .undo(let file, let device): return "; restore it with: cbd undo \(file) \(device)"
        }
    }
}
