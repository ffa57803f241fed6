import Foundation

/// A shared library opened with `dlopen` at run time, so that binaries built
/// without CUDA still start on machines without it: only `--device cuda` needs
/// the libraries, and it says which one is missing and where it looked.
struct DynamicLibrary: @unchecked Sendable {
    let handle: UnsafeMutableRawPointer
    let path: String

    /// Folders tried before the loader's own search, from `TESSERA_CUDA_LIBRARY_PATH`
    /// (colon-separated), then the usual CUDA install folders.
    static var searchFolders: [String] {
        let env = ProcessInfo.processInfo.environment["TESSERA_CUDA_LIBRARY_PATH"] ?? ""
        return env.split(separator: ":").map(String.init)
            + ["/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib", "/usr/lib/x86_64-linux-gnu"]
    }

    /// Opens the first of `names` found in `searchFolders` or by the loader; `what`
    /// names the library in the error (e.g. "NVRTC (the CUDA runtime compiler)").
    /// `names` with those of a CUDA major above `driverMajor` (`libcublas.so.13` on a
    /// 12.x driver) moved last: with several toolkits installed, the one the driver
    /// runs comes first. Kept, not dropped: a forward-compatibility package may make
    /// a newer one work.
    static func preferring(_ names: [String], driverMajor: Int?) -> [String] {
        guard let driverMajor else { return names }
        func major(_ name: String) -> Int? {
            guard let range = name.range(of: ".so.") else { return nil }
            return Int(name[range.upperBound...].prefix { $0.isNumber })
        }
        let newer = names.filter { (major($0) ?? 0) > driverMajor }
        return names.filter { (major($0) ?? 0) <= driverMajor } + newer
    }

    static func open(_ names: [String], what: String) throws -> DynamicLibrary {
        var tried: [String] = []
        var lastError = ""  // the first failure says most (the preferred name)
        let candidates =
            searchFolders.flatMap { folder in names.map { "\(folder)/\($0)" } }
            .filter { FileManager.default.fileExists(atPath: $0) } + names
        for candidate in candidates {
            tried.append(candidate)
            if let handle = dlopen(candidate, RTLD_NOW | RTLD_GLOBAL) {
                return DynamicLibrary(handle: handle, path: candidate)
            }
            let error = dlerror().map { String(cString: $0) } ?? "unknown error"
            if lastError.isEmpty { lastError = error }
        }
        throw CUDAError(
            .library,
            """
            \(what) could not be loaded (tried \(names.joined(separator: ", ")) in \
            \(searchFolders.joined(separator: ", ")) and the loader's path): \(lastError). \
            Install it, or set TESSERA_CUDA_LIBRARY_PATH to the folder that holds it.
            """)
    }

    /// The entry point `name` as a C function of type `T`.
    func symbol<T>(_ name: String, _ type: T.Type = T.self) throws -> T {
        guard let p = dlsym(handle, name) else {
            throw CUDAError(.library, "\(path) has no symbol \(name) (a library older than Tessera needs?)")
        }
        return unsafeBitCast(p, to: type)
    }
}
