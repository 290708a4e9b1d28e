// SPDX-License-Identifier: Apache-2.0
import CBDFormat

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
            case .list(let items)
            where items.contains(where: {
                if case .object = $0 { return true }; return false
            }):
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

/// One JSON object on one line, keys sorted (stable output for scripts and tests). Written
/// here rather than with Foundation's JSONSerialization: Foundation would be most of each
/// tool's size once the Swift runtime is linked statically, for a few lines of output.
public enum JSON {
    public static func line(_ object: [String: Any]) -> String {
        var out = ""
        write(object, to: &out)
        return out
    }

    static func write(_ value: Any, to out: inout String) {
        switch value {
        case let s as String: quote(s, to: &out)
        case let b as Bool: out += b ? "true" : "false"
        case let n as any BinaryInteger: out += String(describing: n)
        case let d as Double: out += d.isFinite ? (d == d.rounded() && abs(d) < 1e15 ? String(Int(d)) : "\(d)") : "null"
        case let list as [Any]:
            out += "["
            for (k, item) in list.enumerated() {
                if k > 0 { out += "," }
                write(item, to: &out)
            }
            out += "]"
        case let object as [String: Any]:
            out += "{"
            for (k, key) in object.keys.sorted().enumerated() {
                if k > 0 { out += "," }
                quote(key, to: &out)
                out += ":"
                write(object[key] ?? "", to: &out)
            }
            out += "}"
        default: quote("\(value)", to: &out)
        }
    }

    /// A JSON string: quotes, backslashes and control characters escaped (RFC 8259).
    static func quote(_ s: String, to out: inout String) {
        out += "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case let c where c.value < 0x20:
                let hex = String(c.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        out += "\""
    }
}
