// SPDX-License-Identifier: Apache-2.0
import Foundation
import Testing

/// The map cannot drift from the territory: ARCHITECTURE.md's table of layers names exactly the
/// targets and dependencies of Package.swift, and no source file imports a module its target
/// does not declare (SwiftPM would let a transitive one through).
@Suite struct ArchitectureTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// Each target of Package.swift and the modules it depends on (`argumentParser` is
    /// swift-argument-parser's ArgumentParser).
    static func packageTargets() throws -> [String: Set<String>] {
        let text = try String(contentsOf: root.appendingPathComponent("Package.swift"), encoding: .utf8)
        let pattern = try NSRegularExpression(
            pattern: #"\.(?:target|executableTarget)\(\s*name: "([^"]+)"(?:,\s*dependencies: \[([^\]]*)\])?"#)
        var out: [String: Set<String>] = [:]
        for m in pattern.matches(in: text, range: NSRange(text.startIndex..., in: text)) {
            let name = String(text[Range(m.range(at: 1), in: text)!])
            let deps = Range(m.range(at: 2), in: text).map { String(text[$0]) } ?? ""
            out[name] = Set(
                deps.split(separator: ",").map {
                    let d = $0.trimmingCharacters(in: .whitespacesAndNewlines).trimmingCharacters(
                        in: CharacterSet(charactersIn: "\""))
                    return d == "argumentParser" ? "ArgumentParser" : d
                }.filter { !$0.isEmpty })
        }
        return out
    }

    /// The rows of ARCHITECTURE.md's table: target -> the modules its "imports" column names.
    static func documentedTargets() throws -> [String: Set<String>] {
        let text = try String(contentsOf: root.appendingPathComponent("ARCHITECTURE.md"), encoding: .utf8)
        var out: [String: Set<String>] = [:]
        for line in text.split(separator: "\n") where line.hasPrefix("| `") {
            let cells = line.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
            guard cells.count >= 3, let first = cells.first else { continue }
            let name = first.split(separator: "`").first.map(String.init) ?? ""
            out[name] = Set(cells[2].split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
        }
        return out
    }

    @Test func theTableIsPackageSwift() throws {
        let package = try Self.packageTargets(), documented = try Self.documentedTargets()
        #expect(package["CBDVolume"] != nil && documented["CBDVolume"] != nil, "parsed nothing")
        // The C wrappers and the fuzzer are described in prose, not rows.
        let prose: Set = ["CSysShim", "CNBDKitCBD", "cbd-fuzz"]
        for (name, deps) in package where !prose.contains(name) {
            #expect(
                documented[name] == deps,
                "ARCHITECTURE.md says \(name) imports \(documented[name].map { $0.sorted() } ?? []), Package.swift \(deps.sorted())"
            )
        }
        for name in documented.keys {
            #expect(package[name] != nil, "ARCHITECTURE.md names \(name), which Package.swift does not have")
        }
    }

    /// Every `import` of our modules and the C system libraries in a target's sources is one
    /// of its declared dependencies: the layering holds file by file.
    @Test func everyImportIsDeclared() throws {
        let package = try Self.packageTargets()
        let ours = Set(package.keys)
        var checked = 0
        for (name, deps) in package {
            let dir = Self.root.appendingPathComponent(name == "cbd-fuzz" ? "Fuzz" : "Sources/\(name)")
            guard let files = FileManager.default.enumerator(atPath: dir.path) else { continue }
            for case let file as String in files where file.hasSuffix(".swift") {
                let text = try String(contentsOf: dir.appendingPathComponent(file), encoding: .utf8)
                for line in text.split(separator: "\n")
                where line.hasPrefix("import ") || line.hasPrefix("@testable import ") {
                    let module = String(line.split(separator: " ").last ?? "")
                    guard ours.contains(module) || module == "ArgumentParser" else { continue }
                    #expect(
                        deps.contains(module), "\(name)/\(file) imports \(module), which \(name) does not depend on")
                    checked += 1
                }
            }
        }
        #expect(checked > 100)
    }

    /// The names a module gives its importers: its public and package types and top-level
    /// functions, and the members of its extensions of other modules' types (a file may use a
    /// module only through those).
    static func exportedNames(of module: String) throws -> Set<String> {
        let dir = root.appendingPathComponent("Sources/\(module)")
        guard let files = FileManager.default.enumerator(atPath: dir.path) else { return [] }
        let type = try NSRegularExpression(
            pattern:
                #"\b(?:public|package|open)\s+(?:final\s+|indirect\s+)*(?:class|struct|enum|protocol|typealias|actor)\s+(\w+)"#
        )
        let function = try NSRegularExpression(pattern: #"(?m)^(?:public|package)\s+func\s+(\w+)"#)
        let member = try NSRegularExpression(pattern: #"\b(?:public|package)\s+(?:static\s+)?(?:func|var|let)\s+(\w+)"#)
        var names = Set<String>(), texts: [String] = []
        for case let file as String in files where file.hasSuffix(".swift") {
            texts.append(try String(contentsOf: dir.appendingPathComponent(file), encoding: .utf8))
        }
        func matches(_ r: NSRegularExpression, _ t: String) -> [String] {
            r.matches(in: t, range: NSRange(t.startIndex..., in: t)).compactMap {
                Range($0.range(at: 1), in: t).map { String(t[$0]) }
            }
        }
        for t in texts { names.formUnion(matches(type, t)); names.formUnion(matches(function, t)) }
        for t in texts {
            // The body of each `extension Other` up to the next closing brace at column 0.
            var rest = Substring(t)
            while let r = rest.range(of: "\nextension ") ?? rest.range(of: "\npublic extension ")
                ?? rest.range(of: "\npackage extension ")
            {
                let base = rest[r.upperBound...].prefix { $0.isLetter || $0.isNumber || $0 == "_" }
                let body = rest[r.upperBound...]
                let end = body.range(of: "\n}")?.lowerBound ?? body.endIndex
                if !names.contains(String(base)) { names.formUnion(matches(member, String(body[..<end]))) }
                rest = body[end...]
            }
        }
        return names
    }

    /// No file imports one of our modules without using a name it gives (removing such an
    /// import still compiles: Swift's member lookup sees what other imports bring), and every
    /// declared dependency is imported somewhere in its target.
    @Test func everyImportAndDependencyIsUsed() throws {
        let package = try Self.packageTargets()
        var exported: [String: Set<String>] = [:]
        for module in package.keys where module.hasPrefix("CBD") || module == "NBDKitCBD" {
            exported[module] = try Self.exportedNames(of: module)
        }
        #expect(exported["CBDFormat"]?.contains("Geometry") == true, "parsed nothing")
        for (name, deps) in package {
            let dir = Self.root.appendingPathComponent(name == "cbd-fuzz" ? "Fuzz" : "Sources/\(name)")
            guard let files = FileManager.default.enumerator(atPath: dir.path) else { continue }
            var imported = Set<String>()
            for case let file as String in files where file.hasSuffix(".swift") {
                let text = try String(contentsOf: dir.appendingPathComponent(file), encoding: .utf8)
                let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
                let words = Set(
                    lines.filter { !$0.hasPrefix("import ") }.joined(separator: "\n")
                        .split { !($0.isLetter || $0.isNumber || $0 == "_") }.map(String.init))
                for line in lines where line.hasPrefix("import ") {
                    let module = String(line.dropFirst("import ".count))
                    imported.insert(module)
                    guard let names = exported[module] else { continue }
                    #expect(
                        !names.isDisjoint(with: words), "\(name)/\(file) imports \(module) and uses none of its names")
                }
            }
            for dep in deps where !dep.hasPrefix("C") || dep.hasPrefix("CBD") {
                #expect(imported.contains(dep), "\(name) declares \(dep) and no file of it imports it")
            }
        }
    }

    /// Every source file and script names its license (Apache-2.0, LICENSE) in an SPDX line.
    @Test func everySourceFileNamesItsLicense() throws {
        var checked = 0
        for folder in ["Sources", "Tests", "Fuzz", "scripts", "bench"] {
            let dir = Self.root.appendingPathComponent(folder)
            guard let files = FileManager.default.enumerator(atPath: dir.path) else { continue }
            for case let file as String in files
            where [".swift", ".c", ".h", ".py", ".sh"].contains(where: file.hasSuffix)
                && !file.contains("fuzz-regressions")
            {
                let text = try String(contentsOf: dir.appendingPathComponent(file), encoding: .utf8)
                #expect(
                    text.prefix(400).contains("SPDX-License-Identifier: Apache-2.0"),
                    "\(folder)/\(file) has no SPDX line")
                checked += 1
            }
        }
        #expect(checked > 100)
    }

    /// A device is opened in one place (`OpenedDevice`): no other source decodes a header to
    /// use it, and each refusal of an unfit device is written once. (HeaderRecovery looks at a
    /// damaged pblk 0 for `OpenedDevice`; the undo file compares a device's header with the one
    /// it saved; cbddump shows the fields of a header that does not validate.)
    @Test func aDeviceIsOpenedInOnePlace() throws {
        let mayDecode: Set = ["CBDVolume/OpenedDevice.swift", "CBDVolume/HeaderRecovery.swift", "CBDDevice/Undo.swift"]
        let refusals = [
            "an update of the allocation tables was interrupted", "not cleanly closed (DIRTY)\", hint: .checkOrForce",
            "too small to hold a CBD header"
        ]
        var decoders: [String] = [], refusalHomes: [String: [String]] = [:]
        let sources = Self.root.appendingPathComponent("Sources")
        guard let files = FileManager.default.enumerator(atPath: sources.path) else {
            throw CocoaError(.fileNoSuchFile)
        }
        for case let file as String in files where file.hasSuffix(".swift") {
            let text = try String(contentsOf: sources.appendingPathComponent(file), encoding: .utf8)
            if !file.hasPrefix("CBDFormat/"), text.contains("Header.decode("), !mayDecode.contains(file) {
                decoders.append(file)
            }
            for r in refusals where text.contains(r) { refusalHomes[r, default: []].append(file) }
        }
        #expect(decoders.isEmpty, "these decode a header themselves: \(decoders.sorted())")
        for r in refusals {
            #expect(
                refusalHomes[r] == ["CBDVolume/OpenedDevice.swift"], "\"\(r)\" is written in \(refusalHomes[r] ?? [])")
        }
    }
}
