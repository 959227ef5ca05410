import TallyTestSupport
import Testing

/// Every test that stops a real server lives under this one serialized suite:
/// two of them running side by side would stop the broker under each other.
/// Enabled only in `./ops/local.sh test`'s outage phase (TALLY_DISRUPTIVE_TESTS=1).
@Suite("Outages (servers are stopped and restarted)", .serialized, .enabled(if: TestEnvironment.disruptive))
enum OutageSuite {}
