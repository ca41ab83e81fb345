-- The operator's own callback forms and a caller's open ones (the call in hand).
CREATE INDEX callback_operator ON callback_forms (operator, id);
CREATE INDEX callback_phone ON callback_forms (phone, id);
