import t from 'tap'
import { normalizeIP } from '../src/services/limits/client-key.js'

/*
 * The per-client key of every limit. The expected values are what
 * @fastify/rate-limit's normalizeIP (ip-address) gives for the same input,
 * which this module replaces: counters and Redis keys keep their names.
 */

t.test('IPv4 as it is; IPv4-mapped IPv6 unwrapped; other IPv6 grouped by /64 in RFC 5952 form', async (t) => {
  const cases: Array<[string, string]> = [
    ['203.0.113.7', '203.0.113.7'],
    ['::ffff:203.0.113.7', '203.0.113.7'],
    ['::FFFF:cb00:7107', '203.0.113.7'],
    ['0:0:0:0:0:ffff:1.2.3.4', '1.2.3.4'],
    ['2001:db8::1', '2001:db8::'],
    ['2001:0DB8:0000:0001:abcd:ef01:2345:6789', '2001:db8:0:1::'],
    ['2001:db8:aaaa:bbbb:1::2', '2001:db8:aaaa:bbbb::'],
    ['0:0:0:1::', '0:0:0:1::'],
    ['1:0:0:2::3', '1:0:0:2::'],
    ['::1', '::'],
    ['::1.2.3.4', '::'],
    ['64:ff9b::1.2.3.4', '64:ff9b::'],
    ['fe80::1%eth0', 'fe80::'],
    ['Not-An-IP', 'not-an-ip']
  ]
  t.same(cases.map(([ip]) => normalizeIP(ip)), cases.map(([, key]) => key))
})

t.test('addresses of one /64 share a key; the next /64 does not', async (t) => {
  t.equal(normalizeIP('2001:db8:1:2:aaaa::1'), normalizeIP('2001:db8:1:2:ffff:ffff:ffff:ffff'))
  t.not(normalizeIP('2001:db8:1:2::1'), normalizeIP('2001:db8:1:3::1'))
})
