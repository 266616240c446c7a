#!/usr/bin/env python3
"""tests/bench/stepup.py: latency of the step-up round trip.

One sequential loop of N round trips against a running broker:
bc-authorize (agent) -> approve (approver API) -> collect the token (agent,
CIBA grant). Prints one JSON line with p50/p90/p99 per phase in
milliseconds. The human's thinking time is of course not part of it: this
measures what the broker adds around the decision.

    BENCH_URL, BENCH_AGENT_ID, BENCH_AGENT_SECRET, BENCH_APPROVER_KEY,
    BENCH_SCOPE, BENCH_RESOURCE come from the environment (nothing secret
    on the command line); the first argument is N (default 50).
"""
import base64
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request


def call(url, data=None, headers=None, method=None):
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b'{}')


def pct(xs, p):
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(len(xs) * p / 100))], 2)


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    url = os.environ['BENCH_URL']
    basic = base64.b64encode(('%s:%s' % (
        urllib.parse.quote(os.environ['BENCH_AGENT_ID'], safe=''),
        urllib.parse.quote(os.environ['BENCH_AGENT_SECRET'], safe=''))).encode()).decode()
    agent = {'Authorization': 'Basic ' + basic,
             'Content-Type': 'application/x-www-form-urlencoded'}
    approver = {'Authorization': 'Bearer ' + os.environ['BENCH_APPROVER_KEY'],
                'Content-Type': 'application/json'}
    scope, resource = os.environ['BENCH_SCOPE'], os.environ['BENCH_RESOURCE']
    phases = {'bc_authorize': [], 'approve': [], 'collect': [], 'round_trip': []}
    errors = 0
    for i in range(n):
        t0 = time.perf_counter()
        st, body = call(url + '/oauth2/bc-authorize', urllib.parse.urlencode({
            'scope': scope, 'resource': resource,
            'binding_message': 'benchmark round trip %d' % i}).encode(), agent)
        t1 = time.perf_counter()
        if st != 200:
            errors += 1
            continue
        rid = body['auth_req_id']
        st, _ = call('%s/v1/approvals/%s/approve' % (url, urllib.parse.quote(rid, safe='')),
                     b'{"reason":"benchmark"}', approver, 'POST')
        t2 = time.perf_counter()
        if st != 200:
            errors += 1
            continue
        st, tok = call(url + '/oauth2/token', urllib.parse.urlencode({
            'grant_type': 'urn:openid:params:grant-type:ciba',
            'auth_req_id': rid}).encode(), agent)
        t3 = time.perf_counter()
        if st != 200 or 'access_token' not in tok:
            errors += 1
            continue
        phases['bc_authorize'].append((t1 - t0) * 1000)
        phases['approve'].append((t2 - t1) * 1000)
        phases['collect'].append((t3 - t2) * 1000)
        phases['round_trip'].append((t3 - t0) * 1000)
    out = {'bench': 'step-up round trip (sequential)', 'round_trips': n, 'errors': errors}
    for k, xs in phases.items():
        if xs:
            out[k + '_ms'] = {'p50': pct(xs, 50), 'p90': pct(xs, 90), 'p99': pct(xs, 99)}
    print(json.dumps(out))
    return 1 if errors else 0


if __name__ == '__main__':
    sys.exit(main())
