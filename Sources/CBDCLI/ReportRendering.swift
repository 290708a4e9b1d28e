import CBDFormat
import Foundation

/// The two views of a `Report`: aligned `key: value` text and JSON.
extension Report {
    /// `key: value` lines with aligned values; nested reports indented, lists of reports one per line.
    public func text(indent: Int = 0) -> String {
        let width = (fields.map { $0.0.count }.max() ?? 0) + 2
        var out = ""
        let pad = String(repeating: " ", count: indent)
        for (k, v) in fields {
            let label = pad + k + ":" + String(repeating: " ", count: width - k.count - 1)
            switch v {
            case .object(let r): out += pad + k + ":\n" + r.text(indent: indent + 2)
            case .bytes(let b): out += pad + k + ":\n" + HexDump.lines(b).map { pad + "  " + $0 + "\n" }.joined()
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
        case .bytes(let b): return HexDump.lines(b).joined(separator: " / ")
        case .unsigned(let u): return String(u)
        case .size(let n): return n < 1024 ? "\(n) \(n == 1 ? "byte" : "bytes")" : "\(ByteSize.format(n)) (\(n) bytes)"
        case .range(let a, let b): return a == b ? "\(a)" : "\(a)-\(b)"
        }
    }

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
        case .bytes(let b): return HexDump.lines(b)
        case .unsigned(let u): return u
        case .size(let n): return n
        case .range(let a, let b): return ["first": a, "last": b]
        }
    }

    public func json() -> String { JSON.line(jsonObject()) }
}

/// One JSON object on one line, keys sorted (stable output for scripts and tests).
public enum JSON {
    public static func line(_ object: [String: Any]) -> String {
        guard let data = try? JSONSerialization.data(withJSONObject: object,
            options: [.sortedKeys]) else { return "{}" }
        return String(decoding: data, as: UTF8.self)
    }
}
