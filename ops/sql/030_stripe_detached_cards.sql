-- A card event is not applied after its card's detachment (StripeWebhookEvents.card): the
-- detachments looked up by card id, not by a scan of every stored Stripe event, which
-- only grows.
CREATE INDEX stripe_webhook_events_detached ON stripe_webhook_events ((payload #>> '{data,object,id}'))
    WHERE type = 'payment_method.detached' AND processed_at IS NOT NULL;
