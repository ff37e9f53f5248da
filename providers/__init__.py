"""Telephony backends behind one port (`providers.base`): memory, asterisk, twilio."""
