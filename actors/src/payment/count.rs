//! How many tickets pay for a cost: go-livepeer's `ticketCountForCost` (`byoc/payment.go`).

/// Most tickets one payment may carry (go-livepeer's `pm` `maxSenderNonces`: an orchestrator
/// refuses more than 600 nonces per ticket-params set).
pub(crate) const MAX_TICKETS: u32 = 600;

/// Tickets to send for `cost` wei when each ticket is worth `ticket_ev` wei:
/// `ceil(cost / ev)`, at most [`MAX_TICKETS`]; none for a zero EV or a cost of zero or less.
/// `timeout` is what go-livepeer sends when the ratio is infinite (it cannot be here: a zero EV
/// answers 0 first, as go-livepeer's does).
pub fn ticket_count_for_cost(cost: f64, ticket_ev: f64, timeout: u32) -> u32 {
    if ticket_ev == 0.0 {
        return 0;
    }
    let ratio = cost / ticket_ev;
    if ratio.is_infinite() {
        return timeout;
    }
    if ratio.is_nan() || ratio <= 0.0 {
        return 0;
    }
    if ratio > f64::from(MAX_TICKETS) {
        return MAX_TICKETS;
    }
    ratio.ceil() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Upstream known answers (`byoc/payment_test.go:TestTicketCountForCost`).
    #[test]
    fn upstream_known_answers() {
        for (cost, ev, count) in [
            (100.0, 25.0, 4),
            (101.0, 25.0, 5),
            (50.0, 100.0, 1),
            (125.0, 20.0, 7),
            (12_000.0, 20.0, 600),
            (1_000_000.0, 1.0, 600),
            (100.0, 0.01, 600),
            (100.0, 0.0, 0),
            (-100.0, 10.0, 0),
        ] {
            assert_eq!(ticket_count_for_cost(cost, ev, 30), count, "cost {cost}, EV {ev}");
        }
    }
}
