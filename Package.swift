// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "cbd-tools",
    platforms: [.macOS(.v13)],
    products: [
        .library(name: "CBDFormat", targets: ["CBDFormat"]),
        .executable(name: "mkfs.cbd", targets: ["mkfs.cbd"]),
        .executable(name: "fsck.cbd", targets: ["fsck.cbd"]),
        .executable(name: "cbddump", targets: ["cbddump"]),
        .executable(name: "cbd", targets: ["cbd"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        // The system's liblz4 and libblkid, found by pkg-config.
        .systemLibrary(name: "CLZ4", pkgConfig: "liblz4",
                       providers: [.apt(["liblz4-dev"]), .brew(["lz4"])]),
        .systemLibrary(name: "CBlkid", pkgConfig: "blkid",
                       providers: [.apt(["libblkid-dev"])]),
        // Our own wrappers for fallocate(2) and ioctl(2), which Swift cannot call directly.
        .target(name: "CSysShim"),
        .target(name: "CBDFormat", dependencies: ["CLZ4", "CBlkid", "CSysShim"]),
        .executableTarget(name: "mkfs.cbd", dependencies: [
            "CBDFormat", .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        .executableTarget(name: "fsck.cbd", dependencies: [
            "CBDFormat", .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        .executableTarget(name: "cbddump", dependencies: [
            "CBDFormat", .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        .executableTarget(name: "cbd", dependencies: [
            "CBDFormat", .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        // libFuzzer targets (`make fuzz` builds them with -sanitize=fuzzer -DFUZZING);
        // a plain build gives a replayer of saved inputs.
        .executableTarget(name: "cbd-fuzz", dependencies: ["CBDFormat"], path: "Fuzz",
                          swiftSettings: [.unsafeFlags(["-parse-as-library"])]),
        .testTarget(name: "CBDFormatTests", dependencies: ["CBDFormat"]),
    ],
    swiftLanguageModes: [.v6]
)
