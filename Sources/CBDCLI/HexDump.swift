// SPDX-License-Identifier: Apache-2.0
/// `hexdump -C` style lines, for showing a pblk's bytes.
public enum HexDump {
    /// Sixteen bytes a line with offset and ASCII; runs of identical lines collapse into `*`.
    public static func lines(_ bytes: [UInt8]) -> [String] {
        var out: [String] = []
        var previous: ArraySlice<UInt8>?
        var starred = false
        for off in stride(from: 0, to: bytes.count, by: 16) {
            let line = bytes[off..<min(off + 16, bytes.count)]
            if let p = previous, p.elementsEqual(line) {
                if !starred { out.append("*"); starred = true }
                continue
            }
            previous = line
            starred = false
            let hex = line.enumerated().map { (i, b) in (i == 8 ? " " : "") + hexByte(b) }.joined(separator: " ")
            let ascii = String(line.map { $0 >= 0x20 && $0 < 0x7F ? Character(UnicodeScalar($0)) : "." })
            out.append(offset(off) + "  " + hex + "  |" + ascii + "|")
        }
        out.append(offset(bytes.count))
        return out
    }

    static func hexByte(_ b: UInt8) -> String {
        let s = String(b, radix: 16)
        return s.count == 1 ? "0" + s : s
    }

    static func offset(_ n: Int) -> String {
        let s = String(n, radix: 16)
        return String(repeating: "0", count: max(0, 8 - s.count)) + s
    }
}
