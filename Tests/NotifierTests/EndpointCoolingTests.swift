import Foundation
import Testing

@testable import Notifier

@Suite("Notifier: endpoints that hung are left untried for a while")
struct EndpointCoolingTests {
    let endpoint = UUID()
    let now = ContinuousClock.now

    @Test("a delivery that got no answer within half the timeout starts the cooling; it lasts its period")
    func hangCools() {
        let cooling = EndpointCooling()
        #expect(cooling.record(endpoint, succeeded: false, answered: false, elapsed: EndpointCooling.hangsAfter, now: now))
        #expect(cooling.cooling(endpoint, now: now + .seconds(1)) == now + EndpointCooling.period)
        #expect(cooling.cooling(UUID(), now: now + .seconds(1)) == nil)
        #expect(cooling.cooling(endpoint, now: now + EndpointCooling.period) == nil)
    }

    @Test("an endpoint that answered, even slowly with an error status, did not hang; nor did a quick failure")
    func answersDoNotCool() {
        let cooling = EndpointCooling()
        // A 503 that took 9 s on a busy machine.
        #expect(!cooling.record(endpoint, succeeded: false, answered: true, elapsed: .seconds(9), now: now))
        // A refused connection, at once.
        #expect(!cooling.record(endpoint, succeeded: false, answered: false, elapsed: .milliseconds(3), now: now))
        #expect(cooling.cooling(endpoint, now: now) == nil)
    }

    @Test("a delivery that succeeds ends the cooling early")
    func successEndsCooling() {
        let cooling = EndpointCooling()
        cooling.record(endpoint, succeeded: false, answered: false, elapsed: .seconds(10), now: now)
        #expect(cooling.cooling(endpoint, now: now) != nil)
        #expect(!cooling.record(endpoint, succeeded: true, answered: true, elapsed: .seconds(8), now: now))
        #expect(cooling.cooling(endpoint, now: now) == nil)
    }
}
