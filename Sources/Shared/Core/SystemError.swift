import Foundation

/// The system's words for why a file operation failed ("File too large", "Permission
/// denied"), where Foundation's text names only a Cocoa code ("The operation could not be
/// completed. (NSCocoaErrorDomain error 512.)"): the POSIX error, or the one underneath a
/// Foundation error; other errors as Foundation describes them.
public func systemErrorText(_ error: Error) -> String {
    systemErrorCode(error).map { String(cString: strerror($0)) } ?? error.localizedDescription
}

/// The POSIX error number of `error`, or of the error underneath it; nil if there is none.
public func systemErrorCode(_ error: Error) -> Int32? {
    let ns = error as NSError
    if ns.domain == NSPOSIXErrorDomain { return Int32(ns.code) }
    if let under = ns.userInfo[NSUnderlyingErrorKey] as? NSError, under.domain == NSPOSIXErrorDomain {
        return Int32(under.code)
    }
    return nil
}
