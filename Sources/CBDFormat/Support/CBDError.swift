// SPDX-License-Identifier: Apache-2.0
import Glibc

/// An error a tool reports as one line, naming the thing and the problem.
///
/// `hint` says what the user can do about it in the library's terms; the tools turn it
/// into words that name their own options (the library never names a command-line flag).
public struct CBDError: Error, CustomStringConvertible, Equatable, Sendable {
    /// A way out of an error that a tool can offer.
    public enum Hint: Sendable, Equatable {
        /// The target exists; overwriting it is allowed on request.
        case overwrite
        /// The device was not closed cleanly; check it first, or go on anyway on request.
        case checkOrForce
        /// The device has a problem only a check can fix.
        case check
        /// The operation rewrites the device in place and needs an undo file.
        case undoFile
        /// A safety check refused; the user may override it.
        case force
        /// An interrupted rewrite that the undo file `file` puts back.
        case undo(file: String, device: String)
    }

    /// What kind of failure this is, for a caller that maps errors to codes (the nbdkit
    /// plugin's errno): never read the message for that.
    public enum Kind: Sendable, Equatable {
        /// Anything not listed below: an I/O error, damage, a refusal.
        case other
        /// The device has no room for the request (nothing of it was done).
        case noSpace
        /// The device or file was opened, or is, read-only.
        case readOnly
        /// The range lies outside the logical device.
        case outOfRange
        /// Another program holds the device (its lock, or the kernel's exclusive open).
        case busy
        /// The device's metadata or data is damaged (a malformed entry, a block that does
        /// not decompress): fsck.cbd can tell more.
        case corrupt
        /// A system call failed with this errno (other than ENOSPC, EDQUOT and EROFS, which
        /// are `.noSpace` and `.readOnly`).
        case system(Int32)
    }

    public var message: String
    public var hint: Hint?
    public var kind: Kind
    public init(_ message: String, hint: Hint? = nil, kind: Kind = .other) {
        self.message = message
        self.hint = hint
        self.kind = kind
    }

    public var description: String { message }
}

/// Errors from the system, with the path and the operation that failed.
package func systemError(_ what: String, _ path: String, errno code: Int32) -> CBDError {
    let kind: CBDError.Kind = code == ENOSPC || code == EDQUOT ? .noSpace : code == EROFS ? .readOnly : .system(code)
    return CBDError("\(path): \(what): \(String(cString: strerror(code)))", kind: kind)
}

/// An error whose message has sizes in it: the numbers are kept, and each tool renders
/// them for people (the library's own description gives plain byte counts).
public enum SizeError: Error, CustomStringConvertible, Equatable, Sendable {
    /// A block device output smaller than the conversion needs.
    case deviceTooSmall(path: String, has: Int, needs: Int)
    /// The requested physical size holds fewer data pblks than the data needs.
    case physicalTooSmall(path: String, physicalBytes: Int, holds: Int, needs: Int)
    /// The zones of `physicalBytes` cannot hold `maxBlocks` entries of `lblkSize` bytes.
    case logicalTooLarge(logicalBytes: Int, physicalBytes: Int, maxBlocks: Int, lblkSize: Int)
    /// A resize target too small for the data in use; `minimum` is the smallest that fits.
    case dataDoesNotFit(path: String, usedPblks: Int, physicalBytes: Int, minimum: Int)

    public var description: String { render { "\($0) bytes" } }

    /// The message with sizes written by `size` (e.g. "1.00 GiB").
    public func render(_ size: (Int) -> String) -> String {
        switch self {
        case .deviceTooSmall(let path, let has, let needs):
            return "\(path): device has \(size(has)), \(size(needs)) needed"
        case .physicalTooSmall(let path, let p, let holds, let needs):
            return "\(path): physical size \(size(p)) holds \(holds) data pblks; the data needs \(needs)"
        case .logicalTooLarge(let l, let p, let maxBlocks, let lblkSize):
            return "logical size \(size(l)) is too large for \(size(p)): the zones hold at most "
                + "\(maxBlocks) blocks of \(lblkSize) bytes"
        case .dataDoesNotFit(let path, let used, let p, let minimum):
            return "\(path): \(used) data pblks in use do not fit in \(size(p)); the minimum is \(minimum) bytes"
        }
    }
}
