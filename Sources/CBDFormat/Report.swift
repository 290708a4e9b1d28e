import Foundation

/// An ordered set of named values: what cbddump and cbd info show, rendered as aligned
/// text (like dumpe2fs) or as JSON from the same data, so the two views cannot disagree.
public struct Report {
    public indirect enum Value {
        case int(Int)
        case string(String)
        case bool(Bool)
        case double(Double)
        case list([Value])
        case object(Report)
        /// Lines of preformatted text (a hex dump): one per line in text, an array in JSON.
        case lines([String])
    }

    public var fields: [(String, Value)] = []
    public init() {}

    public mutating func add(_ key: String, _ v: Int) { fields.append((key, .int(v))) }
    public mutating func add(_ key: String, _ v: String) { fields.append((key, .string(v))) }
    public mutating func add(_ key: String, _ v: Bool) { fields.append((key, .bool(v))) }
    public mutating func add(_ key: String, _ v: Double) { fields.append((key, .double((v * 1000).rounded() / 1000))) }
    public mutating func add(_ key: String, _ v: [Int]) { fields.append((key, .list(v.map { .int($0) }))) }
    public mutating func add(_ key: String, _ v: Report) { fields.append((key, .object(v))) }
    public mutating func add(_ key: String, _ v: [Report]) { fields.append((key, .list(v.map { .object($0) }))) }

    public subscript(key: String) -> Value? { fields.first { $0.0 == key }?.1 }

    // MARK: Text

    /// `key: value` lines with aligned values; nested reports indented, lists of reports one per line.
    public func text(indent: Int = 0) -> String {
        let width = (fields.map { $0.0.count }.max() ?? 0) + 2
        var out = ""
        let pad = String(repeating: " ", count: indent)
        for (k, v) in fields {
            let label = pad + k + ":" + String(repeating: " ", count: width - k.count - 1)
            switch v {
            case .object(let r): out += pad + k + ":\n" + r.text(indent: indent + 2)
            case .lines(let ls): out += pad + k + ":\n" + ls.map { pad + "  " + $0 + "\n" }.joined()
            case .list(let items) where items.contains(where: { if case .object = $0 { return true }; return false }):
                out += pad + k + ": \(items.count)\n"
                for item in items { if case .object(let r) = item { out += pad + "  " + r.inline() + "\n" } }
            default: out += label + Report.plain(v) + "\n"
            }
        }
        return out
    }

    /// One line: `key=value key=value`.
    public func inline() -> String { fields.map { "\($0.0)=\(Report.plain($0.1))" }.joined(separator: " ") }

    static func plain(_ v: Value) -> String {
        switch v {
        case .int(let i): return String(i)
        case .string(let s): return s
        case .bool(let b): return b ? "yes" : "no"
        case .double(let d): return String(format2: d)
        case .list(let l): return l.map(plain).joined(separator: ",")
        case .object(let r): return "{" + r.inline() + "}"
        case .lines(let ls): return ls.joined(separator: " / ")
        }
    }

    // MARK: JSON

    public func jsonObject() -> [String: Any] {
        var d: [String: Any] = [:]
        for (k, v) in fields { d[k] = Report.any(v) }
        return d
    }

    static func any(_ v: Value) -> Any {
        switch v {
        case .int(let i): return i
        case .string(let s): return s
        case .bool(let b): return b
        case .double(let x): return x
        case .list(let l): return l.map(any)
        case .object(let r): return r.jsonObject()
        case .lines(let ls): return ls
        }
    }

    public func json() -> String {
        guard let data = try? JSONSerialization.data(withJSONObject: jsonObject(), options: [.sortedKeys]) else { return "{}" }
        return String(decoding: data, as: UTF8.self)
    }
}
