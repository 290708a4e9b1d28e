// swift-tools-version:6.0
// SPDX-License-Identifier: Apache-2.0
import Foundation
import PackageDescription

// The version lives in one place, the VERSION file; C targets get it as CBD_VERSION.
let version = ((try? String(contentsOfFile: Context.packageDirectory + "/VERSION", encoding: .utf8)) ?? "unknown")
    .trimmingCharacters(in: .whitespacesAndNewlines)
let versionDefine = CSetting.define("CBD_VERSION", to: "\"\(version)\"")

// Linux only: the device layer calls Glibc, libblkid and Linux ioctls directly.
let argumentParser = Target.Dependency.product(name: "ArgumentParser", package: "swift-argument-parser")

let package = Package(
    name: "cbd-tools",
    products: [
        .library(name: "CBDFormat", targets: ["CBDFormat"]),
        .executable(name: "mkfs.cbd", targets: ["mkfs.cbd"]),
        .executable(name: "fsck.cbd", targets: ["fsck.cbd"]),
        .executable(name: "cbddump", targets: ["cbddump"]),
        .executable(name: "cbd", targets: ["cbd"]),
        // The nbdkit plugin: libnbdkit-cbd-plugin.so (installed as nbdkit-cbd-plugin.so).
        .library(name: "nbdkit-cbd-plugin", type: .dynamic, targets: ["NBDKitCBD"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2")
    ],
    targets: [
        // The system's liblz4, libblkid and zlib, found by pkg-config.
        .systemLibrary(name: "CLZ4", pkgConfig: "liblz4", providers: [.apt(["liblz4-dev"])]),
        .systemLibrary(name: "CBlkid", pkgConfig: "blkid", providers: [.apt(["libblkid-dev"])]),
        // zlib's crc32, for the undo file's checksums.
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        // Our own wrappers for fallocate(2), lseek(2) and ioctl(2), which Swift cannot call directly
        // (and the version, from VERSION).
        .target(name: "CSysShim", cSettings: [versionDefine]),
        // The layers, bottom up; each imports only those below it (ARCHITECTURE.md is checked
        // against this list by ArchitectureTests).
        // The format as values: bytes only, no I/O (and the errors, buffers and threads all share).
        .target(name: "CBDFormat", dependencies: ["CLZ4"]),
        // Where bytes live: BlockDevice, image files and block devices, the undo file, signatures.
        .target(name: "CBDDevice", dependencies: ["CBDFormat", "CBlkid", "CZlib", "CSysShim", "CLZ4"]),
        // The kernel-equivalent read/write path and the metadata under it.
        .target(name: "CBDVolume", dependencies: ["CBDFormat", "CBDDevice"]),
        // Whole-device writers: mkfs, convert, resize.
        .target(name: "CBDLayout", dependencies: ["CBDFormat", "CBDDevice", "CBDVolume"]),
        // fsck: passes, problems, repairs.
        .target(name: "CBDCheck", dependencies: ["CBDFormat", "CBDDevice", "CBDVolume"]),
        // What cbddump and cbd info show.
        .target(name: "CBDInspect", dependencies: ["CBDFormat", "CBDDevice", "CBDVolume", "CBlkid"]),
        // Devices for tests and fuzzing: memory, with fault injection (as NIOEmbedded).
        .target(name: "CBDTestSupport", dependencies: ["CBDFormat", "CBDDevice", "CBDVolume", "CBDLayout"]),
        // What the tools share: error lines, sizes, progress bars, report rendering.
        .target(name: "CBDCLI", dependencies: ["CBDFormat", "CBDDevice", argumentParser]),
        .executableTarget(
            name: "mkfs.cbd", dependencies: ["CBDFormat", "CBDDevice", "CBDLayout", "CBDCLI", argumentParser]),
        .executableTarget(
            name: "fsck.cbd",
            dependencies: ["CBDFormat", "CBDDevice", "CBDVolume", "CBDCheck", "CBDCLI", argumentParser]),
        .executableTarget(
            name: "cbddump", dependencies: ["CBDFormat", "CBDDevice", "CBDInspect", "CBDCLI", argumentParser]),
        .executableTarget(
            name: "cbd",
            dependencies: [
                "CBDFormat", "CBDDevice", "CBDVolume", "CBDLayout", "CBDCheck",
                "CBDInspect", "CBDCLI", argumentParser
            ]),
        // nbdkit's plugin structure in C (nbdkit-plugin.h), calling the Swift plugin.
        .target(name: "CNBDKitCBD", cSettings: [versionDefine]),
        // Release builds link the Swift runtime into the plugin, as `--static-swift-stdlib`
        // does for the tools (SwiftPM applies it to executables only): nbdkit loads it anywhere.
        // `-z nodelete`: nbdkit's dlclose at exit must not unmap the plugin (and the runtime it
        // holds) under Dispatch's worker threads, which outlive unload; one that woke in the
        // unmapped code crashed the stop with SIGSEGV after the device was stored.
        .target(
            name: "NBDKitCBD", dependencies: ["CBDFormat", "CBDDevice", "CBDVolume", "CNBDKitCBD"],
            linkerSettings: [
                .unsafeFlags(["-Xlinker", "-z", "-Xlinker", "nodelete"]),
                .unsafeFlags(["-static-stdlib"], .when(configuration: .release))
            ]),
        // libFuzzer targets (`make fuzz` builds them with -sanitize=fuzzer -DFUZZING);
        // a plain build gives a replayer of saved inputs.
        .executableTarget(
            name: "cbd-fuzz",
            dependencies: [
                "CBDFormat", "CBDDevice", "CBDVolume", "CBDCheck",
                "CBDTestSupport"
            ], path: "Fuzz",
            swiftSettings: [.unsafeFlags(["-parse-as-library"])]),
        // Unit tests need no built tool (`swift test --filter` runs them alone); the end-to-end
        // tests run the tools, nbdkit and the scripts under Tests/.
        .testTarget(
            name: "CBDUnitTests",
            dependencies: [
                "CBDFormat", "CBDDevice", "CBDVolume", "CBDLayout", "CBDCheck",
                "CBDTestSupport", "CBDCLI"
            ]),
        .testTarget(
            name: "CBDEndToEndTests",
            dependencies: [
                "CBDFormat", "CBDDevice", "CBDVolume", "CBDLayout",
                "CBDCheck", "CBDInspect", "CBDTestSupport", "CBDCLI"
            ])
    ],
    swiftLanguageModes: [.v6]
)
