// SPDX-License-Identifier: Apache-2.0
import Glibc
import CBlkid
import CSysShim
import CBDFormat

/// A regular file or a block device, accessed with pread/pwrite.
///
/// Writers get safety first: a block device is opened with O_EXCL (the kernel then refuses
/// it while it is mounted or held by another user), and an image file is locked with flock
/// (LOCK_EX) and refused while a loop device maps it. Readers of an image file take LOCK_SH,
/// so that nobody reads a device in the middle of another program's commit.
public final class FileDevice: BlockDevice, @unchecked Sendable {
    public enum Mode: Sendable { case readOnly, readWrite }

    public let path: String
    public private(set) var size: Int
    public let isWritable: Bool
    public let isBlockDevice: Bool
    public let fd: Int32

    /// Opens `path`. With `createSize`, a missing regular file is created (sparse) with that size.
    public init(path: String, mode: Mode, createSize: Int? = nil) throws {
        self.path = path
        isWritable = mode == .readWrite
        var st = stat()
        var exists = stat(path, &st) == 0
        if !exists {
            guard errno == ENOENT else { throw systemError("cannot access", path, errno: errno) }
            guard let sz = createSize, mode == .readWrite else {
                throw CBDError("\(path): no such file or device")
            }
            let cfd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
            guard cfd >= 0 else { throw systemError("cannot create", path, errno: errno) }
            defer { close(cfd) }
            guard ftruncate(cfd, off_t(sz)) == 0 else {
                let e = errno
                unlink(path)
                throw systemError("cannot set size of new file", path, errno: e)
            }
            exists = stat(path, &st) == 0
        }
        let kind = st.st_mode & S_IFMT
        guard kind == S_IFREG || kind == S_IFBLK else {
            throw CBDError(
                kind == S_IFDIR
                    ? "\(path): is a directory"
                    : "\(path): not a regular file or block device")
        }
        isBlockDevice = kind == S_IFBLK
        // Root may open a mode-0444 file for writing; a tool that changes data should not.
        if mode == .readWrite && !isBlockDevice && st.st_mode & 0o222 == 0 {
            throw CBDError("\(path): file is read-only", kind: .readOnly)
        }
        var flags = (mode == .readWrite ? O_RDWR : O_RDONLY) | O_CLOEXEC
        if isBlockDevice && mode == .readWrite { flags |= O_EXCL }
        let fd = open(path, flags)
        guard fd >= 0 else {
            if errno == EBUSY { throw CBDError("\(path): device is mounted or busy", kind: .busy) }
            if errno == EROFS || errno == EACCES || errno == EPERM {
                throw systemError(mode == .readWrite ? "cannot open for writing" : "cannot open", path, errno: errno)
            }
            throw systemError("cannot open", path, errno: errno)
        }
        self.fd = fd
        size = 0
        do {
            size = try FileDevice.measure(fd: fd, isBlockDevice: isBlockDevice, path: path)
            if mode == .readWrite && isBlockDevice && cbd_blk_readonly(fd) == 1 {
                throw CBDError("\(path): block device is read-only", kind: .readOnly)
            }
            if !isBlockDevice { try lockImage(exclusive: mode == .readWrite) }
        } catch {
            close(fd)
            throw error
        }
    }

    deinit { close(fd) }

    /// Size in bytes: fstat for files, libblkid (BLKGETSIZE64) for block devices.
    static func measure(fd: Int32, isBlockDevice: Bool, path: String) throws -> Int {
        if isBlockDevice {
            let n = blkid_get_dev_size(fd)
            guard n >= 0 else { throw CBDError("\(path): cannot read the device size") }
            return Int(n)
        }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw systemError("cannot stat", path, errno: errno) }
        return Int(st.st_size)
    }

    /// Refuses an image another writer holds (or, for a writer, any other user holds) or,
    /// for a writer, a loop device maps.
    private func lockImage(exclusive: Bool) throws {
        guard flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) == 0 else {
            throw CBDError("\(path): image is in use by another program", kind: .busy)
        }
        if exclusive, let loop = LoopDevices.backing(path) {
            throw CBDError("\(path): image is in use by \(loop)", kind: .busy)
        }
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int) throws {
        guard let base = buffer.baseAddress else { return }
        try preadAll(fd, base, buffer.count, offset, what: path)
    }

    public func write(_ buffer: UnsafeRawBufferPointer, at offset: Int) throws {
        guard let base = buffer.baseAddress else { return }
        try pwriteAll(fd, base, buffer.count, offset, what: path)
        if !isBlockDevice && offset + buffer.count > size { size = offset + buffer.count }
    }

    /// Punches a hole (files) or discards/zeroes (block devices); writes zeros as a last resort.
    public func zero(_ range: Range<Int>) throws {
        guard !range.isEmpty else { return }
        if cbd_punch_hole(fd, Int64(range.lowerBound), Int64(range.count)) == 0 { return }
        if isBlockDevice {
            if cbd_zero_range(fd, Int64(range.lowerBound), Int64(range.count)) == 0 { return }
            if cbd_blk_zeroout(fd, UInt64(range.lowerBound), UInt64(range.count)) == 0 { return }
        }
        let chunk = 1 << 20
        let zeros = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 4096)
        defer { zeros.deallocate() }
        zeros.initializeMemory(as: UInt8.self, repeating: 0)
        var off = range.lowerBound
        while off < range.upperBound {
            let n = min(chunk, range.upperBound - off)
            try write(UnsafeRawBufferPointer(rebasing: zeros[0..<n]), at: off)
            off += n
        }
    }

    /// A hole in an image file; a block device is left alone (a discard there may be slow or
    /// not zero the range, and nothing needs it).
    public func release(_ range: Range<Int>) {
        guard !isBlockDevice, !range.isEmpty else { return }
        _ = cbd_punch_hole(fd, Int64(range.lowerBound), Int64(range.count))
    }

    /// Grows or shrinks an image file; a block device keeps its size (shrinking it is a no-op).
    public func setSize(_ bytes: Int) throws {
        guard !isBlockDevice else {
            guard bytes <= size else {
                throw CBDError("\(path): a block device cannot grow past its size of \(size) bytes")
            }
            return
        }
        guard ftruncate(fd, off_t(bytes)) == 0 else { throw systemError("cannot resize", path, errno: errno) }
        size = bytes
    }

    public func sync() throws {
        guard fsync(fd) == 0 else { throw systemError("cannot sync", path, errno: errno) }
    }

    public var openFile: Int32? { fd }

    /// Into an image file only: a block device gains nothing from it.
    public func copyInKernel(_ count: Int, from source: Int32, at offset: Int, to target: Int) -> Bool {
        !isBlockDevice && copyFileRange(count, from: source, at: offset, to: fd, at: target)
    }

    /// Whether `range` holds no data on disk (a hole in a sparse file), by SEEK_DATA.
    public func isHole(_ range: Range<Int>) -> Bool {
        guard let next = nextData(from: range.lowerBound) else { return true }
        return next >= range.upperBound
    }

    /// The first byte at or after `offset` (which holds data) that is in a hole or at the end
    /// (SEEK_HOLE). A block device, or a filesystem that cannot tell, answers its size.
    public func nextHole(from offset: Int) -> Int {
        guard !isBlockDevice else { return size }
        let next = cbd_seek_hole(fd, Int64(offset))
        return next < 0 ? size : min(Int(next), size)
    }

    /// The first byte at or after `offset` that is not in a hole (SEEK_DATA); nil when only
    /// holes follow. A block device, or a filesystem that cannot tell, answers `offset`.
    public func nextData(from offset: Int) -> Int? {
        guard !isBlockDevice else { return offset < size ? offset : nil }
        return seekData(fd, from: offset)
    }
}

/// Loop devices and the image files behind them, from /sys/block/loop*/loop/backing_file.
enum LoopDevices {
    static func backing(_ path: String) -> String? {
        guard let real = realpath(path, nil) else { return nil }
        defer { free(real) }
        let target = String(cString: real)
        guard let dir = opendir("/sys/block") else { return nil }
        defer { closedir(dir) }
        while let ent = readdir(dir) {
            let name = withUnsafeBytes(of: ent.pointee.d_name) {
                String(
                    decoding: $0.prefix(while: { $0 != 0 }),
                    as: UTF8.self)
            }
            guard name.hasPrefix("loop") else { continue }
            guard let f = fopen("/sys/block/\(name)/loop/backing_file", "r") else { continue }
            defer { fclose(f) }
            var line = [CChar](repeating: 0, count: 4096)
            guard fgets(&line, Int32(line.count), f) != nil else { continue }
            let backing = String(
                decoding: line.prefix(while: { $0 != 0 && $0 != 10 }).map { UInt8(bitPattern: $0) },
                as: UTF8.self)
            if backing == target { return "/dev/\(name)" }
        }
        return nil
    }
}
