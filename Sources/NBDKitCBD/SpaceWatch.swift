// SPDX-License-Identifier: Apache-2.0
import CNBDKitCBD
import Glibc
import CBDDevice
import CBDVolume

/// The server's eye on free space: it publishes the device's live use (`ServeStatus`, read
/// by `cbd info`) and writes one warning to nbdkit's log each time free space falls below the
/// low-water mark (`lowwater=`), as dm-thin's low-water event does; once space is freed above
/// it again, the next fall warns again. Called with the volume's lock held alone.
struct SpaceWatch {
    private var publisher: ServeStatus.Publisher?
    private var readOnly = false
    private var warned = false
    private var lastPublished = 0.0
    /// Requests refused for want of space.
    var refusals = 0

    /// Publishing at most this often (seconds) for ordinary writes keeps it off the hot path.
    private static let interval = 0.05

    mutating func start(path: String, readOnly: Bool) {
        publisher = ServeStatus.Publisher(devicePath: path)
        self.readOnly = readOnly
    }

    mutating func stop() {
        publisher?.remove()
        publisher = nil
    }

    /// After a change: warns when below the mark (once per fall), and publishes (always when
    /// `now`, else at most every `interval`). The figures cost nothing once counted.
    mutating func update(_ v: Volume, now: Bool) throws {
        var status = ServeStatus(
            pid: getpid(), readOnly: readOnly, geometry: v.geometry, usage: try v.usage(),
            refusals: refusals)
        let available = status.availablePblks
        let percent = status.dataPblks > 0 ? 100 * available / status.dataPblks : 0
        if percent >= Server.lowWater {
            warned = false
        } else if !readOnly && !warned {
            warned = true
            cbd_plugin_warn(
                "\(v.device.path): free space is below \(Server.lowWater)% ("
                    + "\(available) of \(status.dataPblks) data pblks free); writes fail with ENOSPC when "
                    + "it runs out: discard (trim) unused blocks or grow the device")
        }
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        let seconds = Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
        guard now || seconds - lastPublished >= SpaceWatch.interval else { return }
        lastPublished = seconds
        status.uri = Server.uri
        status.failed = v.readOnlyAfter != nil
        publisher?.publish(status)
    }
}
