/** The IPv4 helpers behind allowedCidr validation and the pinned mount-target address. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  cidrContains,
  defaultHostAddress,
  formatCidr,
  formatIpv4,
  parseIpv4,
  parseIpv4Cidr,
  subnetHostProblem,
  type Ipv4Cidr,
} from '../lib/ipv4';
import { pickMountTargetIp } from '../lib/s3files-mount-stack';

function cidr(text: string): Ipv4Cidr {
  const parsed = parseIpv4Cidr(text);
  if (typeof parsed === 'string') throw new Error(parsed);
  return parsed;
}

describe('parseIpv4 / formatIpv4', () => {
  it('round-trips addresses across the whole range', () => {
    for (const text of ['0.0.0.0', '10.20.0.100', '172.31.255.254', '255.255.255.255']) {
      const value = parseIpv4(text);
      assert.notEqual(value, undefined, text);
      assert.equal(formatIpv4(value!), text);
    }
    assert.equal(parseIpv4('255.255.255.255'), 2 ** 32 - 1);
    assert.equal(parseIpv4('10.0.0.1'), 10 * 2 ** 24 + 1);
  });

  it('rejects what is not a dotted quad', () => {
    for (const text of ['', '10.0.0', '10.0.0.0.1', '256.0.0.1', '10.0.0.-1', '01.2.3.4', '1.2.3.4 ', 'a.b.c.d', '::1']) {
      assert.equal(parseIpv4(text), undefined, JSON.stringify(text));
    }
  });
});

describe('parseIpv4Cidr', () => {
  it('parses canonical blocks, including /0 and /32', () => {
    assert.deepEqual(cidr('10.20.0.0/16'), { network: parseIpv4('10.20.0.0'), prefix: 16 });
    assert.equal(formatCidr(cidr('0.0.0.0/0')), '0.0.0.0/0');
    assert.equal(formatCidr(cidr('198.51.100.7/32')), '198.51.100.7/32');
  });

  it('reports host bits, bad prefixes and garbage as messages', () => {
    assert.match(parseIpv4Cidr('10.20.0.1/16') as string, /host bits set; did you mean 10\.20\.0\.0\/16\?/);
    assert.match(parseIpv4Cidr('10.0.0.0/33') as string, /prefix length above 32/);
    assert.match(parseIpv4Cidr('10.0.0.0') as string, /not an IPv4 CIDR block/);
    assert.match(parseIpv4Cidr('10.0.0.0/') as string, /not an IPv4 CIDR block/);
    assert.match(parseIpv4Cidr('10.0.0.300/24') as string, /invalid IPv4 address/);
  });

  it('cidrContains covers exactly the block', () => {
    const block = cidr('10.20.1.0/24');
    assert.ok(cidrContains(block, parseIpv4('10.20.1.0')!));
    assert.ok(cidrContains(block, parseIpv4('10.20.1.255')!));
    assert.ok(!cidrContains(block, parseIpv4('10.20.0.255')!));
    assert.ok(!cidrContains(block, parseIpv4('10.20.2.0')!));
  });
});

describe('mount-target address selection', () => {
  it('AWS-reserved addresses of a subnet are refused, the rest accepted', () => {
    const subnet = cidr('10.20.0.0/24');
    const problem = (ip: string) => subnetHostProblem(subnet, parseIpv4(ip)!);
    for (const ip of ['10.20.0.0', '10.20.0.1', '10.20.0.2', '10.20.0.3']) assert.match(problem(ip)!, /first four/);
    assert.match(problem('10.20.0.255')!, /last address/);
    assert.match(problem('10.20.1.4')!, /not inside the subnet/);
    for (const ip of ['10.20.0.4', '10.20.0.100', '10.20.0.254']) assert.equal(problem(ip), undefined, ip);
  });

  it('the default host is .100 when it fits, the middle of a small subnet otherwise, never reserved', () => {
    assert.equal(formatIpv4(defaultHostAddress(cidr('10.20.0.0/24'))), '10.20.0.100');
    assert.equal(formatIpv4(defaultHostAddress(cidr('10.20.0.64/26'))), '10.20.0.96');
    assert.equal(formatIpv4(defaultHostAddress(cidr('10.20.0.16/28'))), '10.20.0.24');
    for (const block of ['10.20.0.0/24', '10.20.0.64/26', '10.20.0.16/28', '10.0.0.0/16']) {
      const subnet = cidr(block);
      assert.equal(subnetHostProblem(subnet, defaultHostAddress(subnet)), undefined, block);
    }
    assert.throws(() => defaultHostAddress(cidr('10.20.0.0/29')), /too small/);
  });

  it('pickMountTargetIp: default, explicit, and refusal with the subnet named', () => {
    assert.equal(pickMountTargetIp('10.20.1.0/24'), '10.20.1.100');
    assert.equal(pickMountTargetIp('10.20.1.0/24', '10.20.1.9'), '10.20.1.9');
    assert.throws(() => pickMountTargetIp('10.20.1.0/24', '10.20.0.9'), /pick a host address in 10\.20\.1\.0\/24/);
    assert.throws(() => pickMountTargetIp('${Token[TOKEN.1]}'), /must be known at synth time/);
  });
});
