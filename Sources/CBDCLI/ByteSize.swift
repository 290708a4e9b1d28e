/// Sizes as people type them: `1048576`, `512K`, `64M`, `1.5G`, `2T`, `1GiB` (binary units).
public enum ByteSize {
    static let units: [(String, Int)] = [("K", 10), ("M", 20), ("G", 30), ("T", 40), ("P", 50), ("E", 60)]

    /// Parses a non-negative size in bytes; nil for anything malformed or too large.
    public static func parse(_ text: String) -> Int? {
        var s = text.trimmingCharacters(in: " ")
        for suffix in ["iB", "B"] where s.uppercased().hasSuffix(suffix.uppercased()) && s.count > suffix.count {
            s = String(s.dropLast(suffix.count)); break
        }
        var shift = 0
        if let last = s.last, let u = units.first(where: { $0.0 == String(last).uppercased() }) {
            shift = u.1
            s = String(s.dropLast())
        }
        guard !s.isEmpty, s.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }),
              s.filter({ $0 == "." }).count <= 1 else { return nil }
        if s.contains(".") {
            guard let v = Double(s), v >= 0 else { return nil }
            let bytes = v * Double(UInt64(1) << UInt64(shift))
            guard bytes < 9.2e18 else { return nil }
            return Int(bytes)
        }
        guard let v = Int(s) else { return nil }
        let (r, o) = v.multipliedReportingOverflow(by: 1 << shift)
        return o ? nil : r
    }

    /// `1.00 GiB`, for summaries.
    public static func format(_ bytes: Int) -> String {
        if bytes < 1024 { return "\(bytes) B" }
        var v = Double(bytes), i = -1
        while v >= 1024 && i < units.count - 1 { v /= 1024; i += 1 }
        let r = (v * 100).rounded() / 100
        var s = String(r)
        if let dot = s.firstIndex(of: ".") {
            let decimals = s.distance(from: dot, to: s.endIndex) - 1
            if decimals < 2 { s += String(repeating: "0", count: 2 - decimals) }
        }
        return "\(s) \(units[i].0)iB"
    }
}

extension String {
    func trimmingCharacters(in set: Character) -> String {
        String(drop(while: { $0 == set }).reversed().drop(while: { $0 == set }).reversed())
    }
}
