#!/usr/bin/env python3
"""check_responses.py - every response the API tests saw, checked against
proto/openapi.yaml.

Reads the JSON lines tests/api/apitest.h appends to $D2NWG_CONTRACT_LOG (one
per answered request: method, path, status, content_type, body) and checks
each against the operation its path and method name in the spec:
  - the status is documented for that operation (a method the path does not
    take must be a documented 405; an unknown path must be a 404 error, a
    target that is not a path (NUL, control characters) a 400 error);
  - the content type is one the response declares;
  - a JSON body validates against the response's schema (OpenAPI 3.0:
    `nullable`, `$ref`s resolved), and in strict mode every object that lists
    its `properties` has no other key, so an undocumented field fails too;
  - `format: date-time` strings are RFC 3339.
Prints TAP: one test per (operation, status) seen, then the totals."""
import json
import re
import sys
import urllib.parse

import jsonschema
import yaml

DATE_TIME = re.compile(r'^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$')


def to_json_schema(node, spec, strict, seen=()):
    """OpenAPI 3.0 schema object -> JSON Schema (draft 4), refs inlined."""
    if isinstance(node, list):
        return [to_json_schema(x, spec, strict, seen) for x in node]
    if not isinstance(node, dict):
        return node
    if '$ref' in node:
        ref = node['$ref']
        if ref in seen:
            raise ValueError('recursive $ref ' + ref)
        target = spec
        for part in ref.lstrip('#/').split('/'):
            target = target[part]
        return to_json_schema(target, spec, strict, seen + (ref,))
    out = {}
    for k, v in node.items():
        if k in ('nullable', 'example', 'description', 'default', 'readOnly', 'writeOnly'):
            continue
        if k == 'properties':
            out[k] = {name: to_json_schema(s, spec, strict, seen) for name, s in v.items()}
        elif k == 'format' and v != 'date-time':
            continue
        else:
            out[k] = to_json_schema(v, spec, strict, seen)
    if strict and 'properties' in node and 'additionalProperties' not in node:
        out['additionalProperties'] = False
    if node.get('nullable'):
        out = {'anyOf': [out, {'type': 'null'}]}
    return out


def template_regex(tmpl):
    parts = re.split(r'(\{[^}]+\})', tmpl)
    return re.compile('^' + ''.join('[^/:]+' if p.startswith('{') else re.escape(p)
                                    for p in parts) + '$')


def main():
    strict = '--loose' not in sys.argv
    args = [a for a in sys.argv[1:] if not a.startswith('--')]
    spec_path, log_path = args[0], args[1]
    with open(spec_path) as f:
        spec = yaml.safe_load(f)
    paths = [(template_regex(t), t, ops) for t, ops in spec['paths'].items()]
    fmt = jsonschema.FormatChecker(formats=())
    fmt.checks('date-time')(lambda s: not isinstance(s, str) or bool(DATE_TIME.match(s)))
    error_schema = to_json_schema({'$ref': '#/components/schemas/Error'}, spec, strict)
    groups, problems = {}, []
    with open(log_path) as f:
        records = [json.loads(line) for line in f if line.strip()]
    for rec in records:
        key, problem = check_one(rec, paths, spec, strict, fmt, error_schema)
        groups.setdefault(key, [0, []])
        groups[key][0] += 1
        if problem:
            groups[key][1].append(problem)
    n = 0
    print('1..%d' % (len(groups) + 1))
    failed = 0
    for key in sorted(groups):
        count, errs = groups[key]
        n += 1
        if errs:
            failed += 1
            print('not ok %d - %s: %d of %d responses break the contract' % (n, key, len(errs), count))
            for e in errs[:5]:
                print('# ' + e.replace('\n', '\n# '))
        else:
            print('ok %d - %s (%d responses)' % (n, key, count))
    n += 1
    if len(records) < 50:
        failed += 1
        print('not ok %d - the API tests recorded only %d responses in %s (expected hundreds)'
              % (n, len(records), log_path))
    else:
        print('ok %d - %d responses of %d operation/status pairs checked%s'
              % (n, len(records), len(groups), ' (strict: no undocumented field)' if strict else ''))
    return 1 if failed else 0


def valid_target(path):
    """A request path the server may route: it percent-decodes to UTF-8 text
    without NUL or other control characters."""
    try:
        text = urllib.parse.unquote_to_bytes(path).decode('utf-8')
    except UnicodeDecodeError:
        return False
    return not any(ord(ch) < 0x20 or ord(ch) == 0x7f for ch in text)


def check_one(rec, paths, spec, strict, fmt, error_schema):
    method, status = rec['method'].upper(), rec['status']
    path = rec['path'].split('?', 1)[0]
    where = '%s %s -> %d' % (method, rec['path'], status)
    match = next(((t, ops) for rx, t, ops in paths if rx.match(path)), None)
    body = rec.get('body')
    if match is None:
        key = '%s (no route) %d' % (method, status)
        if status == 400 and not valid_target(path):
            # not a path at all (it decodes to NUL, a control character or
            # bytes that are not UTF-8): refused before routing, as a 400 error
            return key, validate(body, error_schema, fmt, where)
        if status != 404:
            return key, where + ': unknown path answered %d, not 404' % status
        return key, validate(body, error_schema, fmt, where)
    tmpl, ops = match
    op = ops.get('get' if method == 'HEAD' else method.lower())
    if op is None:
        key = '%s %s %d' % (method, tmpl, status)
        declared = [o['responses']['405'] for o in ops.values() if '405' in o.get('responses', {})]
        if status != 405 or not declared:
            return key, where + ': method not on the path must be a documented 405'
        resp = declared[0]
    else:
        key = '%s %s %d' % (method, tmpl, status)
        resp = op['responses'].get(str(status)) or op['responses'].get('default')
        if resp is None:
            return key, where + ': status %d is not documented for %s %s' % (status, method, tmpl)
    if '$ref' in resp:
        resp = to_json_schema_ref(resp['$ref'], spec)
    if method == 'HEAD':
        return key, None
    content = resp.get('content', {})
    ctype = rec.get('content_type', '').split(';')[0].strip().lower()
    if not content:
        return key, (where + ': undocumented body (%s)' % ctype) if ctype else None
    if ctype not in content:
        return key, where + ': content type %r, documented: %s' % (ctype, ', '.join(content))
    if ctype != 'application/json':
        return key, None
    schema = to_json_schema(content[ctype].get('schema', {}), spec, strict)
    return key, validate(body, schema, fmt, where)


def to_json_schema_ref(ref, spec):
    target = spec
    for part in ref.lstrip('#/').split('/'):
        target = target[part]
    return target


def validate(body, schema, fmt, where):
    if body is None:
        return where + ': JSON response without a body'
    try:
        value = json.loads(body)
    except ValueError as e:
        return where + ': body is not JSON: %s' % e
    v = jsonschema.Draft4Validator(schema, format_checker=fmt)
    errs = sorted(v.iter_errors(value), key=lambda e: list(e.absolute_path))
    if not errs:
        return None
    return where + ':\n' + '\n'.join('  at %s: %s' % ('/'.join(map(str, e.absolute_path)) or '(body)',
                                                     e.message[:300]) for e in errs[:5])


if __name__ == '__main__':
    sys.exit(main())
