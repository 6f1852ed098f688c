/**
 * Context parameters (`cdk deploy -c key=value`, or `context` in cdk.json)
 * turned into validated stack properties. Every problem is reported as a
 * ConfigError whose message names the parameter and shows how to set it.
 */
import { formatCidr, parseIpv4, parseIpv4Cidr } from './ipv4';

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** Regions whose CloudFormation has no AWS::S3Files::* resource types (cfn-lint 1.58 schemas). */
export const REGIONS_WITHOUT_S3FILES: readonly string[] = ['me-central-1'];

export const DEFAULT_STACK_NAME = 'EfsProxyS3Files';
export const DEFAULT_VPC_CIDR = '10.20.0.0/16';

export interface MountStackConfig {
  /** Stack name in CloudFormation. */
  readonly stackName: string;
  /** Region the stack is pinned to; undefined = environment-agnostic. */
  readonly region?: string;
  /** IPv4 CIDR blocks allowed to reach the NLB on TCP 2049 (at least one). */
  readonly allowedCidrs: string[];
  /** VPC CIDR block, a /16 to /22; the stack carves /24 subnets out of it. */
  readonly vpcCidr: string;
  /** Pinned mount-target IPv4 address; undefined = host .100 of the mount-target subnet. */
  readonly mountTargetIp?: string;
  /** Production layout: mount target in a private isolated subnet plus an S3 gateway endpoint. */
  readonly privateSubnets: boolean;
  /** Bucket prefix the file system exposes ("" = whole bucket, otherwise ends with "/"). */
  readonly prefix?: string;
  /** Also grant s3files:ClientRootAccess in the client policy. */
  readonly clientRootAccess: boolean;
  /** Also grant s3:GetObject* on the bucket in the client policy (S3 Files direct S3 reads). */
  readonly clientDirectS3Read: boolean;
}

/** What `app.node.tryGetContext` gives back: strings from `-c`, any JSON from cdk.json. */
export type ContextGetter = (key: string) => unknown;

const HOW_TO_ALLOWED_CIDR =
  'Pass the address block that may reach the NLB on TCP 2049, e.g. ' +
  '`npx cdk deploy -c allowedCidr=$(curl -s https://checkip.amazonaws.com)/32` ' +
  '(several blocks: -c allowedCidr=198.51.100.7/32,203.0.113.0/24). ' +
  'There is no default: 0.0.0.0/0 must be asked for explicitly.';

function optionalString(get: ContextGetter, key: string): string | undefined {
  const value = get(key);
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') {
    throw new ConfigError(`context parameter "${key}" must be a string, got ${JSON.stringify(value)}`);
  }
  const trimmed = value.trim();
  return trimmed === '' ? undefined : trimmed;
}

function optionalBoolean(get: ContextGetter, key: string, fallback: boolean): boolean {
  const value = get(key);
  if (value === undefined || value === null) return fallback;
  if (typeof value === 'boolean') return value;
  if (typeof value === 'string') {
    const lowered = value.trim().toLowerCase();
    if (['true', '1', 'yes'].includes(lowered)) return true;
    if (['false', '0', 'no', ''].includes(lowered)) return false;
  }
  throw new ConfigError(`context parameter "${key}" must be true or false, got ${JSON.stringify(value)}`);
}

function parseAllowedCidrs(get: ContextGetter): string[] {
  const raw = get('allowedCidr');
  if (raw === undefined || raw === null || (typeof raw === 'string' && raw.trim() === '')) {
    throw new ConfigError(`missing required context parameter "allowedCidr". ${HOW_TO_ALLOWED_CIDR}`);
  }
  let items: unknown[];
  if (typeof raw === 'string') items = raw.split(',');
  else if (Array.isArray(raw)) items = raw;
  else throw new ConfigError(`context parameter "allowedCidr" must be a string or a list of strings. ${HOW_TO_ALLOWED_CIDR}`);

  const cidrs: string[] = [];
  for (const item of items) {
    if (typeof item !== 'string') {
      throw new ConfigError(`context parameter "allowedCidr" has a non-string entry ${JSON.stringify(item)}`);
    }
    let text = item.trim();
    if (text === '') continue;
    // A bare address means that one host.
    if (!text.includes('/') && parseIpv4(text) !== undefined) text = `${text}/32`;
    const parsed = parseIpv4Cidr(text);
    if (typeof parsed === 'string') {
      throw new ConfigError(`context parameter "allowedCidr": ${parsed}. ${HOW_TO_ALLOWED_CIDR}`);
    }
    const canonical = formatCidr(parsed);
    if (!cidrs.includes(canonical)) cidrs.push(canonical);
  }
  if (cidrs.length === 0) {
    throw new ConfigError(`context parameter "allowedCidr" is empty. ${HOW_TO_ALLOWED_CIDR}`);
  }
  return cidrs;
}

function parseRegion(get: ContextGetter, env: NodeJS.ProcessEnv): string | undefined {
  const region = optionalString(get, 'region') ?? (env.CDK_DEFAULT_REGION?.trim() || undefined);
  if (region === undefined) return undefined;
  if (!/^[a-z]{2}(-[a-z]+)+-[0-9]+$/.test(region)) {
    throw new ConfigError(`context parameter "region": "${region}" does not look like an AWS region (e.g. ca-central-1)`);
  }
  if (REGIONS_WITHOUT_S3FILES.includes(region)) {
    throw new ConfigError(`context parameter "region": S3 Files (AWS::S3Files::*) is not available in ${region}`);
  }
  return region;
}

function parseVpcCidr(get: ContextGetter): string {
  const text = optionalString(get, 'vpcCidr') ?? DEFAULT_VPC_CIDR;
  const parsed = parseIpv4Cidr(text);
  if (typeof parsed === 'string') throw new ConfigError(`context parameter "vpcCidr": ${parsed}`);
  if (parsed.prefix < 16 || parsed.prefix > 22) {
    throw new ConfigError(`context parameter "vpcCidr": "${text}" must be a /16 to a /22 (the stack carves /24 subnets out of it)`);
  }
  return formatCidr(parsed);
}

function parseMountTargetIp(get: ContextGetter): string | undefined {
  const text = optionalString(get, 'mountTargetIp');
  if (text === undefined) return undefined;
  if (parseIpv4(text) === undefined) {
    throw new ConfigError(`context parameter "mountTargetIp": "${text}" is not an IPv4 address`);
  }
  return text;
}

function parsePrefix(get: ContextGetter): string | undefined {
  const prefix = optionalString(get, 'prefix');
  if (prefix === undefined) return undefined;
  if (!prefix.endsWith('/') || prefix.startsWith('/')) {
    throw new ConfigError(`context parameter "prefix": "${prefix}" must end with "/" and not start with one (e.g. data/)`);
  }
  return prefix;
}

function parseStackName(get: ContextGetter): string {
  const name = optionalString(get, 'stackName') ?? DEFAULT_STACK_NAME;
  if (!/^[A-Za-z][A-Za-z0-9-]{0,127}$/.test(name)) {
    throw new ConfigError(`context parameter "stackName": "${name}" is not a valid CloudFormation stack name`);
  }
  return name;
}

/** Reads and validates every context parameter the app understands. */
export function configFromContext(get: ContextGetter, env: NodeJS.ProcessEnv = process.env): MountStackConfig {
  return {
    stackName: parseStackName(get),
    region: parseRegion(get, env),
    allowedCidrs: parseAllowedCidrs(get),
    vpcCidr: parseVpcCidr(get),
    mountTargetIp: parseMountTargetIp(get),
    privateSubnets: optionalBoolean(get, 'privateSubnets', false),
    prefix: parsePrefix(get),
    clientRootAccess: optionalBoolean(get, 'clientRootAccess', false),
    clientDirectS3Read: optionalBoolean(get, 'clientDirectS3Read', false),
  };
}
