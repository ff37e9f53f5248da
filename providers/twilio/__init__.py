"""The Twilio backend: REST calls out, TwiML webhooks in, IVR flows rendered as TwiML."""

from providers.twilio.adapter import TwilioTelephony
from providers.twilio.config import TwilioConfig
from providers.twilio.webhooks import webhook_app

__all__ = ["TwilioConfig", "TwilioTelephony", "webhook_app"]
