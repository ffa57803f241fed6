import COpenBLAS
import Foundation

/// OpenBLAS, loaded at run time with the best kernel this CPU supports.
///
/// Debian's OpenBLAS picks its kernels once, when the library is loaded, from
/// `OPENBLAS_CORETYPE` or its own CPU table; a CPU newer than that table gets
/// the generic kernels (5× slower sgemm on AVX-512 machines). So the library is
/// never linked: `BLAS.shared` sets `OPENBLAS_CORETYPE` from the CPU's features
/// (unless the user chose one), `dlopen`s it, checks a small product against a
/// plain loop, and exposes the few entry points the engine calls.
///
/// Overrides: `TESSERA_BLAS_CORETYPE` (or `OPENBLAS_CORETYPE`) names the kernel,
/// `TESSERA_BLAS_LIBRARY` the library file.
package final class BLAS: @unchecked Sendable {
    package enum LoadError: Error, CustomStringConvertible {
        /// `chosen`: the library was `TESSERA_BLAS_LIBRARY`'s, not the system's.
        case libraryNotFound(tried: [String], reason: String, chosen: Bool = false)
        case symbolMissing(String, library: String)
        case verificationFailed(coreType: String, maxError: Float)

        package var description: String {
            switch self {
            case .libraryNotFound(let tried, let reason, let chosen):
                if chosen {
                    // (It advised setting the variable that was set and wrong: audit 44 D7.)
                    return "OpenBLAS could not be loaded from TESSERA_BLAS_LIBRARY=\(tried.joined()): \(reason). "
                        + "Point it at an OpenBLAS library, or unset it to use the system's."
                }
                return "OpenBLAS could not be loaded (tried \(tried.joined(separator: ", "))): \(reason). "
                    + "Install it with `apt-get install libopenblas-dev` or set TESSERA_BLAS_LIBRARY."
            case .symbolMissing(let name, let library):
                return "OpenBLAS library \(library) has no symbol \(name)"
            case .verificationFailed(let core, let err):
                return "OpenBLAS kernel \(core) computed a wrong product (max error \(err)); "
                    + "choose another with TESSERA_BLAS_CORETYPE (e.g. Haswell, Prescott)"
            }
        }
    }

    typealias SgemmFn =
        @convention(c) (
            CBLAS_ORDER, CBLAS_TRANSPOSE, CBLAS_TRANSPOSE, blasint, blasint, blasint,
            Float, UnsafePointer<Float>?, blasint, UnsafePointer<Float>?, blasint,
            Float, UnsafeMutablePointer<Float>?, blasint
        ) -> Void
    typealias SetThreadsFn = @convention(c) (CInt) -> Void
    typealias GetThreadsFn = @convention(c) () -> CInt
    typealias CorenameFn = @convention(c) () -> UnsafeMutablePointer<CChar>?

    /// The library file that was loaded.
    package let libraryPath: String
    /// The kernel OpenBLAS reports it uses, e.g. `SkylakeX`, `Haswell`, `Zen`.
    package let coreName: String
    /// How the kernel was chosen, for the log: "cpu features: avx512", "TESSERA_BLAS_CORETYPE", …
    package let coreChoice: String

    private let sgemmFn: SgemmFn
    private let setThreadsFn: SetThreadsFn?
    private let getThreadsFn: GetThreadsFn?

    /// The process-wide instance. Loading happens on first use; failure is fatal
    /// for numeric work, so callers that want a clean message use `load()`.
    package static let shared: Result<BLAS, LoadError> = {
        do throws(LoadError) { return .success(try BLAS.load()) } catch { return .failure(error) }
    }()

    /// The loaded library, or a thrown `LoadError` with a message for the user.
    package static func get() throws -> BLAS { try shared.get() }

    private init(
        libraryPath: String, coreName: String, coreChoice: String,
        sgemm: @escaping SgemmFn, setThreads: SetThreadsFn?, getThreads: GetThreadsFn?
    ) {
        self.libraryPath = libraryPath
        self.coreName = coreName
        self.coreChoice = coreChoice
        self.sgemmFn = sgemm
        self.setThreadsFn = setThreads
        self.getThreadsFn = getThreads
    }

    private static func load() throws(LoadError) -> BLAS {
        let env = ProcessInfo.processInfo.environment
        var choice: String
        // The kernel asked for by name, to compare with the one OpenBLAS takes (it ignores a name it does not know).
        var asked: String?
        if let forced = env["TESSERA_BLAS_CORETYPE"], !forced.isEmpty {
            setenv("OPENBLAS_CORETYPE", forced, 1)
            choice = "TESSERA_BLAS_CORETYPE=\(forced)"
            asked = forced
        } else if let user = env["OPENBLAS_CORETYPE"], !user.isEmpty {
            choice = "OPENBLAS_CORETYPE=\(user)"
            asked = user
        } else if let core = CPUFeatures.current.preferredOpenBLASCore {
            setenv("OPENBLAS_CORETYPE", core, 1)
            asked = core
            choice = "cpu features (\(CPUFeatures.current.summary)) → \(core)"
        } else {
            choice = "OpenBLAS's own detection"
        }

        var candidates = ["libopenblas.so.0", "libopenblas.so", "libopenblas.dylib"]
        let chosen = env["TESSERA_BLAS_LIBRARY"].map { !$0.isEmpty } ?? false
        if chosen, let path = env["TESSERA_BLAS_LIBRARY"] { candidates = [path] }
        var handle: UnsafeMutableRawPointer?
        var loaded = ""
        var lastError = "not found"
        for name in candidates {
            if let h = dlopen(name, RTLD_NOW | RTLD_LOCAL) {
                handle = h
                loaded = name
                break
            }
            if let e = dlerror() { lastError = String(cString: e) }
        }
        guard let handle else { throw .libraryNotFound(tried: candidates, reason: lastError, chosen: chosen) }

        func symbol<T>(_ name: String, as: T.Type) -> T? {
            guard let p = dlsym(handle, name) else { return nil }
            return unsafeBitCast(p, to: T.self)
        }
        guard let sgemm = symbol("cblas_sgemm", as: SgemmFn.self) else {
            throw .symbolMissing("cblas_sgemm", library: loaded)
        }
        var core = "unknown"
        if let corename = symbol("openblas_get_corename", as: CorenameFn.self), let c = corename() {
            core = String(cString: c)
        }
        // (An unknown name was credited with OpenBLAS's own choice: audit 44 D7.)
        if let asked, core != "unknown", core.lowercased() != asked.lowercased() {
            choice += ", which this OpenBLAS does not have: it chose \(core)"
        }
        let blas = BLAS(
            libraryPath: loaded, coreName: core, coreChoice: choice, sgemm: sgemm,
            setThreads: symbol("openblas_set_num_threads", as: SetThreadsFn.self),
            getThreads: symbol("openblas_get_num_threads", as: GetThreadsFn.self))
        let err = blas.selfTestError()
        guard err <= 1e-3 else { throw .verificationFailed(coreType: core, maxError: err) }
        return blas
    }

    /// Number of threads OpenBLAS uses for one call.
    package var threads: Int {
        get { Int(getThreadsFn?() ?? 1) }
        set { setThreadsFn?(CInt(max(1, newValue))) }
    }

    /// C = alpha·op(A)·op(B) + beta·C, row-major. A is M×K (or K×M when transA),
    /// B is K×N (or N×K when transB), C is M×N; lda/ldb/ldc are row strides.
    @inline(__always)
    package func sgemm(
        transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
        alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int,
        beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        sgemmFn(
            CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
            blasint(m), blasint(n), blasint(k), alpha, a, blasint(lda), b, blasint(ldb),
            beta, c, blasint(ldc))
    }

    /// Max relative error of a 37×41×29 product against a plain triple loop.
    func selfTestError() -> Float {
        let m = 37, n = 41, k = 29
        var a = [Float](repeating: 0, count: m * k)
        var b = [Float](repeating: 0, count: k * n)
        for i in a.indices { a[i] = Float((i * 7919) % 97) / 97 - 0.5 }
        for i in b.indices { b[i] = Float((i * 104_729) % 89) / 89 - 0.5 }
        var c = [Float](repeating: 0, count: m * n)
        a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                c.withUnsafeMutableBufferPointer { pc in
                    sgemm(
                        m: m, n: n, k: k, a: pa.baseAddress!, lda: k, b: pb.baseAddress!, ldb: n,
                        c: pc.baseAddress!, ldc: n)
                }
            }
        }
        var worst: Float = 0
        for i in 0..<m {
            for j in 0..<n {
                var s: Double = 0
                for p in 0..<k { s += Double(a[i * k + p]) * Double(b[p * n + j]) }
                worst = max(worst, Float(abs(Double(c[i * n + j]) - s) / max(1, abs(s))))
            }
        }
        return worst
    }
}
