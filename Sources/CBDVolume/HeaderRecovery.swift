// SPDX-License-Identifier: Apache-2.0
import CBDFormat
import CBDDevice

/// What can be done when pblk 0 cannot be used as it is. The header is the only place the
/// device describes itself, but every zone repeats the geometry in its layout: a bitmap at
/// each zone's start, a table of well-formed entries after it, padding bits set past the last
/// zone's data. As e2fsck falls back on a backup superblock and vdoregenerategeometry scans
/// for its geometry, fsck.cbd finds the header again from the zones (`search`).
public enum HeaderRecovery {
    /// What pblk 0 holds.
    public enum Diagnosis: Sendable {
        /// A valid header, and a device as large as it says.
        case usable
        /// A header of a known version whose fields are all valid, but with reserved bytes that
        /// are not zero: the fields are kept and the bytes cleared.
        case reservedBytes(Header, offset: Int)
        /// A valid header on a device shorter than it says (a truncated image file).
        case deviceShort(Header, Geometry, deviceBytes: Int)
        /// The resize marker: `cbd undo` finishes the job, not a repair.
        case resizeMarker
        /// The magic is right but the version, flags or algorithm are unknown: a newer writer's
        /// device, never overwritten (the reason).
        case foreign(String)
        /// Not a usable header (the reason): the geometry must be found from the zones.
        case unusable(String)
    }

    /// Looks at pblk 0 without throwing for what it finds (only for I/O errors).
    public static func diagnose(_ device: BlockDevice) throws -> Diagnosis {
        guard device.size >= Units.pblkSize else { return .unusable("the device is smaller than one pblk") }
        let b = try device.readPblks(0)
        if ResizeMarker.undoPath(in: b) != nil { return .resizeMarker }
        do {
            let h = try Header.decode(b)
            let g = try Geometry(header: h)
            if g.physicalBytes <= device.size { return .usable }
            // A truncated image keeps its entry variant; a size field that is wrong (far larger)
            // gives another one: that header's size is not to be believed, the zones are.
            let short = Geometry.pblkBytes(forPblkCount: device.size / Units.pblkSize) == g.pblkBytes
            return short
                ? .deviceShort(h, g, deviceBytes: device.size)
                : .unusable("header claims \(g.physicalBytes) bytes, far more than the device's \(device.size)")
        } catch let e as HeaderError where e.mustNotBeRewritten {
            return .foreign(e.description)
        } catch HeaderError.reservedNotZero(let offset) {
            // Version 1.0's fields with the reserved bytes cleared (a 1.1 intent record lies in
            // them: such a header is not guessed at, the zones decide).
            var clean = b
            for i in Header.fieldBytes..<Units.pblkSize { clean[i] = 0 }
            let reason = HeaderError.reservedNotZero(offset: offset).description
            guard let h = try? Header.decode(clean), let g = try? Geometry(header: h) else { return .unusable(reason) }
            // Reserved bytes and a size past the device: two fields wrong, the zones decide.
            guard g.physicalBytes <= device.size else {
                return .unusable("\(reason), and the header claims more than the device")
            }
            return .reservedBytes(h, offset: offset)
        } catch {
            return .unusable("\(error)")
        }
    }

    /// A geometry that fits what the zones hold, and how well.
    public struct Candidate: Sendable {
        public let header: Header
        public let geometry: Geometry
        /// Allocated entries found in the tables where this geometry puts them.
        public let entries: Int
        /// Problems a read-only check finds with this header (0: every rule holds).
        public let problems: Int

        package init(header: Header, geometry: Geometry, entries: Int, problems: Int) {
            (self.header, self.geometry, self.entries, self.problems) = (header, geometry, entries, problems)
        }

        /// One line: the layout and its evidence.
        public var evidence: String {
            let g = geometry
            return
                "\(g.lblkSize >> 10) KiB blocks, \(g.nrPblk) pblks, \(g.nrZones) zone\(g.nrZones == 1 ? "" : "s") of "
                + "\(g.lblkPerZone) lblks (\(g.variantName)): \(entries) allocated entries, "
                + (problems == 0 ? "every rule holds" : "\(problems) problem\(problems == 1 ? "" : "s") found")
        }
    }
}
