/// An error a tool reports as one line, naming the thing and the problem.
public struct CBDError: Error, CustomStringConvertible, Equatable, Sendable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Errors from the system, with the path and the operation that failed.
public func systemError(_ what: String, _ path: String, errno code: Int32) -> CBDError {
    CBDError("\(path): \(what): \(String(cString: strerror(code)))")
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
