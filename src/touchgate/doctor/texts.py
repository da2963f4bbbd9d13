"""What each result of the doctor means and how to fix it, in English.

A report item carries a ``code`` and ``params``; its sentence is
``MESSAGES[code].format(**params)`` and its fix ``FIXES[code]``. The console
renders the same codes from its i18n files (``doctor.msg.<code>`` and
``doctor.fix.<code>``, with the same ``{placeholders}``); ``en.json`` holds these
very sentences (a test keeps them equal), ``zh-CN.json`` their translation.
``error_kind`` params are words of ``delivery.client.ERROR_KINDS``, rendered as
``doctor.error_kind.<kind>``.
"""

from __future__ import annotations

MESSAGES: dict[str, str] = {
    # protocol
    "batch_ok": "A batch of {size} was answered as specified: {succeeded} TOU_SUCC, "
    "{failed} TOU_FAIL.",
    "batch_accepted_async": "A batch of {size} was accepted (code 0); {pending} users wait "
    "for receipts (async receipt mode).",
    "unreachable": "A batch of {size} got no response ({error_kind}).",
    "blocked": "Not sent: the network guard refuses this address.",
    "timeout": "A batch of {size} got no complete answer within {seconds} s (the timeout).",
    "redirect": "A batch of {size} was answered with the redirect HTTP {status}.",
    "refused_signed": "A correctly signed batch of {size} was refused with HTTP {status}.",
    "http_status": "A batch of {size} was answered with HTTP {status}.",
    "not_json": "The answer to a batch of {size} is not a JSON object.",
    "not_utf8": "The answer to a batch of {size} is not valid UTF-8.",
    "no_code": "The answer to a batch of {size} has no integer 'code'.",
    "code_nonzero": "A batch of {size} was refused as a whole: code {code}, message '{message}'.",
    "bad_status_list": "The answer to a batch of {size} has a 'sendStatusList' that is "
    "not a list of objects with an integer gid.",
    "bad_status": "The answer to a batch of {size} gives gid {gid} the status '{status}'.",
    "missing_gids": "The answer to a batch of {size} leaves out {count} gids (e.g. {gids}).",
    "duplicate_gids": "The answer to a batch of {size} lists gids more than once ({gids}).",
    "unexpected_gids": "The answer to a batch of {size} lists gids that were not in the "
    "request ({gids}).",
    "order_no_mismatch": "The answer to a batch of {size} carries the orderNo '{got}', not "
    "the one sent.",
    "order_no_missing": "The answer to a batch of {size} does not echo the orderNo.",
    "utf8_ok": "Chinese text in temData was accepted and the answer is valid UTF-8.",
    # idempotency
    "idempotent": "The same order sent again got the same answer for every user.",
    "not_idempotent": "The same order sent again got a different answer for {count} users "
    "(e.g. {gids}).",
    # security
    "sign_checked": "A request with a wrong sign was refused.",
    "sign_not_checked_webhook_checked": "A request with a wrong sign was accepted; the "
    "Standard Webhooks signature is checked instead.",
    "sign_not_checked": "A request with a wrong sign was accepted.",
    "sign_skipped": "Not checked: no auth token given, so requests carry no sign.",
    "webhook_checked": "A request with a wrong Standard Webhooks signature was refused.",
    "webhook_not_checked_sign_checked": "A request with a wrong Standard Webhooks signature "
    "was accepted; the sign is checked instead.",
    "webhook_not_checked": "A request with a wrong Standard Webhooks signature was accepted.",
    "webhook_skipped": "Not checked: no signing secret given, so requests carry no "
    "Standard Webhooks signature.",
    "stale_refused": "A correctly signed request from 10 minutes ago was refused.",
    "stale_accepted": "A correctly signed request from 10 minutes ago was accepted.",
    "stale_skipped": "Not checked: the endpoint checks no signature, so any request is accepted.",
    # timing
    "latency_ok": "Batches of {size}: p50 {p50_ms} ms, p95 {p95_ms} ms over {samples} "
    "requests; the timeout is {timeout_ms} ms.",
    "latency_near_timeout": "Batches of {size}: p50 {p50_ms} ms, p95 {p95_ms} ms over "
    "{samples} requests — more than half the timeout of {timeout_ms} ms.",
    "latency_over_timeout": "Batches of {size}: {timeouts} of {samples} requests took "
    "longer than the timeout of {timeout_ms} ms.",
    "in_flight_suggestion": "Suggested in-flight limit: {in_flight} requests (about "
    "{users_per_second} users/s with batches of {size}); tried up to {tried} at once.",
    "in_flight_unmeasured": "Not measured: batches of {size} did not get valid answers.",
    # receipts
    "receipts_settled": "Receipts settled all {users} users of {orders} orders within {seconds} s.",
    "receipts_unsettled": "After {seconds} s of polling, {count} users have no result from "
    "the receipt URL (e.g. {gids}).",
    "receipts_no_url": "The touchpoint is in async receipt mode but has no receipt URL.",
    "receipts_sync": "Not checked: the touchpoint answers in sync mode (no receipts).",
    # options API
    "options_ok": "The options API for '{param}' offers {count} options in {levels} level(s).",
    "options_unreachable": "The options API for '{param}' could not be called ({error_kind}).",
    "options_http_status": "The options API for '{param}' answered HTTP {status}.",
    "options_refused": "The options API for '{param}' refused: code {code}, message '{message}'.",
    "options_malformed": "The options API for '{param}' answered something that is not "
    "{{code: 0, enumArgs: [{{code, description, childEnumArgs?}}]}}.",
    "options_too_deep": "The options API for '{param}' nests options {depth} levels deep.",
    "options_too_many": "The options API for '{param}' offers {count} options.",
    "options_none": "Not checked: no options API (no enum parameter takes its options from "
    "an API).",
    # whole groups
    "skipped_no_answer": "Not checked: a batch of 1 got no valid answer.",
}

_UNANSWERED = (
    "Check that the endpoint is running and that the request URL is right; Touchgate "
    "retries a batch that gets no answer, on the touchpoint's retry schedule."
)
_SHAPE = (
    'Answer HTTP 200 with {{"code": 0, "message": "", "orderNo": "<the orderNo received>", '
    '"sendStatusList": [{{"gid": 123, "status": "TOU_SUCC", "errorMsg": ""}}]}}.'
)
_IDEMPOTENT = (
    "Treat orderNo as the idempotency key: do the work once, keep the answer, and return "
    "it again for a repeat. Touchgate resends an order with the same orderNo whenever it "
    "got no usable answer, so otherwise a retry sends the message twice or reports a "
    "reached user as failed."
)
_VERIFY = (
    "Verify the Standard Webhooks signature (or the sign) of every request and refuse "
    "the others with HTTP 401; touchgate.receiver does both. Without it anyone who can "
    "reach this URL can make it send messages or issue coupons in your name."
)
_FAST = (
    "Answer faster: do the slow work after answering (async receipt mode), lower the "
    "batch size, or raise the touchpoint's timeout (at most 60 s). A batch that times "
    "out is retried, so its users may get the message twice unless the endpoint is "
    "idempotent."
)
_RECEIPTS = (
    "Answer each receipt poll with the status of the order's users (the delivery answer's "
    "format, TOU_SUCC or TOU_FAIL per gid). Users still pending when the receipt timeout "
    "passes become TOU_FAIL (receipt timeout)."
)
_OPTIONS_SHAPE = (
    'Answer HTTP 200 with {{"code": 0, "enumArgs": [{{"code": "X", "description": "…"}}]}}.'
)

FIXES: dict[str, str] = {
    "unreachable": _UNANSWERED,
    "blocked": "An administrator can allow this network with TOUCHGATE_ALLOWED_NETWORKS "
    "(on the command line: --allow-network CIDR).",
    "timeout": _FAST,
    "redirect": "Redirects are not followed: register the final URL as the request URL.",
    "refused_signed": "Give the endpoint the touchpoint's auth token and signing secret (the "
    "doctor signs with the same ones), and check its clock: a request more than 5 minutes "
    "from its time is refused.",
    "http_status": "Answer HTTP 200. HTTP 408, 429 and 5xx are retried; any other status "
    "fails every user of the batch.",
    "not_json": _SHAPE,
    "not_utf8": "Encode the JSON answer in UTF-8.",
    "no_code": _SHAPE,
    "code_nonzero": "code is for the whole batch: answer code 0 and report a problem with "
    "one user as TOU_FAIL with an errorMsg in sendStatusList.",
    "bad_status_list": _SHAPE,
    "bad_status": "A status is TOU_SUCC (reached) or TOU_FAIL (not reached, errorMsg says why).",
    "missing_gids": "List every gid of the request in sendStatusList exactly once; in sync "
    "mode an unlisted user counts as TOU_FAIL (no status returned).",
    "duplicate_gids": "List every gid of the request in sendStatusList exactly once.",
    "unexpected_gids": "List only the gids of the request; others are ignored.",
    "order_no_mismatch": "Echo the orderNo of the request in the answer.",
    "order_no_missing": "Echo the orderNo of the request in the answer.",
    "not_idempotent": _IDEMPOTENT,
    "sign_not_checked": _VERIFY,
    "webhook_not_checked": _VERIFY,
    "stale_accepted": "Refuse a request whose webhook-timestamp (or timeStamp) is more than "
    "5 minutes from now; otherwise a captured request can be replayed later.",
    "latency_near_timeout": _FAST,
    "latency_over_timeout": _FAST,
    "receipts_unsettled": _RECEIPTS,
    "receipts_no_url": "Set the receipt URL of the touchpoint.",
    "options_unreachable": _UNANSWERED,
    "options_http_status": _OPTIONS_SHAPE,
    "options_refused": "Answer code 0 with the options of the parameter named by paramName.",
    "options_malformed": _OPTIONS_SHAPE,
    "options_too_deep": "Two levels at most: a category (with childEnumArgs) and its options. "
    "Touchgate refuses deeper nesting.",
    "options_too_many": "Over 100 options make the operator's dropdown unusable: group them "
    "into categories or offer fewer.",
}


def message(code: str, params: dict[str, object]) -> str:
    return MESSAGES[code].format(**params)


def fix(code: str, params: dict[str, object]) -> str | None:
    template = FIXES.get(code)
    return None if template is None else template.format(**params)
