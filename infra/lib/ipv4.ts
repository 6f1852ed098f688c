/**
 * Small, dependency-free IPv4 helpers used to validate `allowedCidr` and to
 * pick / check the pinned mount-target address at synth time.
 */

export interface Ipv4Cidr {
  /** Network address as an unsigned 32-bit integer. */
  readonly network: number;
  /** Prefix length, 0..32. */
  readonly prefix: number;
}

const OCTET = /^(0|[1-9][0-9]{0,2})$/;

/** Parses a dotted-quad IPv4 address, returning undefined when it is not one. */
export function parseIpv4(text: string): number | undefined {
  const parts = text.split('.');
  if (parts.length !== 4) return undefined;
  let value = 0;
  for (const part of parts) {
    if (!OCTET.test(part)) return undefined;
    const octet = Number(part);
    if (octet > 255) return undefined;
    value = value * 256 + octet;
  }
  return value;
}

export function formatIpv4(value: number): string {
  return [24, 16, 8, 0].map((shift) => Math.floor(value / 2 ** shift) % 256).join('.');
}

/** Number of addresses in a block of the given prefix length. */
export function blockSize(prefix: number): number {
  return 2 ** (32 - prefix);
}

/**
 * Parses `a.b.c.d/n` strictly: the host bits must be zero, so a typo like
 * `203.0.113.7/24` is reported instead of silently widened.
 * Returns an error message instead of throwing so callers can add context.
 */
export function parseIpv4Cidr(text: string): Ipv4Cidr | string {
  const match = /^([0-9.]+)\/([0-9]{1,2})$/.exec(text);
  if (!match) return `"${text}" is not an IPv4 CIDR block (expected a.b.c.d/n)`;
  const address = parseIpv4(match[1]);
  const prefix = Number(match[2]);
  if (address === undefined) return `"${text}" has an invalid IPv4 address`;
  if (prefix > 32) return `"${text}" has a prefix length above 32`;
  const size = blockSize(prefix);
  if (address % size !== 0) {
    const network = address - (address % size);
    return `"${text}" has host bits set; did you mean ${formatIpv4(network)}/${prefix}?`;
  }
  return { network: address, prefix };
}

export function formatCidr(cidr: Ipv4Cidr): string {
  return `${formatIpv4(cidr.network)}/${cidr.prefix}`;
}

export function cidrContains(cidr: Ipv4Cidr, address: number): boolean {
  return address >= cidr.network && address < cidr.network + blockSize(cidr.prefix);
}

/**
 * Why `address` cannot be given to an ENI in a VPC subnet with block `subnet`,
 * or undefined when it can. AWS reserves the first four addresses of every
 * subnet (network, VPC router, DNS, future use) and the last one (broadcast).
 */
export function subnetHostProblem(subnet: Ipv4Cidr, address: number): string | undefined {
  const ip = formatIpv4(address);
  if (!cidrContains(subnet, address)) {
    return `${ip} is not inside the subnet ${formatCidr(subnet)}`;
  }
  const offset = address - subnet.network;
  if (offset < 4) {
    return `${ip} is one of the first four addresses of ${formatCidr(subnet)}, which AWS reserves`;
  }
  if (offset === blockSize(subnet.prefix) - 1) {
    return `${ip} is the last address of ${formatCidr(subnet)}, which AWS reserves`;
  }
  return undefined;
}

/**
 * The default pinned mount-target address: host number `preferredOffset` of
 * the subnet (clear of the low addresses that AWS hands out first), or the
 * middle of a subnet too small for it.
 */
export function defaultHostAddress(subnet: Ipv4Cidr, preferredOffset = 100): number {
  const size = blockSize(subnet.prefix);
  if (size < 16) {
    throw new Error(`subnet ${formatCidr(subnet)} is too small for a mount target (AWS needs at least a /28)`);
  }
  const offset = preferredOffset < size - 1 ? preferredOffset : Math.floor(size / 2);
  return subnet.network + offset;
}
