import COpenSSL

/// Keeps OpenSSL's process-wide state alive until the process is gone.
///
/// libpq, libcurl and rabbitmq-c all use OpenSSL, and by default its first
/// initialization registers an `atexit` handler that frees its global locks. A
/// dedicated thread that used OpenSSL (libpq tries TLS on every TCP connection) runs
/// OpenSSL's per-thread cleanup when it ends, and that cleanup takes one of those
/// locks. When a command returns while such a thread is still ending, the two race: the
/// thread locks a freed lock and the process dies with SIGSEGV on its way out (CI saw
/// `invoicer bill` exit 139 this way). Leaving the cleanup to the kernel removes the race.
///
/// Only the first initialization decides, so every client calls `keepUntilProcessExit()`
/// before its C library can touch OpenSSL.
public enum OpenSSLAtExit {
    /// Initializes OpenSSL without its `atexit` cleanup (once per process; later calls
    /// do nothing). Returns whether that initialization succeeded.
    @discardableResult
    public static func keepUntilProcessExit() -> Bool { initialized }

    private static let initialized: Bool = OPENSSL_init_crypto(UInt64(OPENSSL_INIT_NO_ATEXIT), nil) == 1
}
