import ArgumentParser
import CBDFormat

/// How every tool turns a library error into one line on standard error and an exit status.
public enum ToolRunner {
    /// Runs a tool's body; a library error becomes `tool: message` and exit status 1.
    public static func run(_ tool: String, _ body: () throws -> Void) throws {
        do { try body() } catch {
            guard let line = message(for: error) else { throw error }
            FileHandleStderr.write("\(tool): \(line)\n")
            throw ExitCode(1)
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

/// The options the tools share, parsed one way everywhere.
public enum Options {
    /// What a user should know about a block size: 4 KiB blocks never compress.
    public static func blockSizeNote(lblkShift: Int) -> String? {
        lblkShift == 0 ? "Note: with 4 KiB blocks nothing is compressed (a block never fits in less than one "
            + "4 KiB pblk); only all-zero blocks take no space. Use -b 16K or more to compress." : nil
    }

    /// The refusal of a target that holds other data, unless the user asked to overwrite.
    public static func signatureRefusal(_ path: String, _ found: [Signatures.Found]) -> CBDError {
        CBDError("\(path) contains \(found.map(\.description).joined(separator: ", "))", hint: .overwrite)
    }
}

/// "1 zone", "2 zones": a count with its noun, singular where it is one.
public func plural(_ n: Int, _ noun: String) -> String { "\(n) \(noun)\(n == 1 ? "" : "s")" }
