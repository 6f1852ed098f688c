/**
 * Context parameters: the required allowedCidr, the pinned mount-target
 * address, the production (private subnet) switch, region handling and the
 * optional client permissions.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Annotations, Match } from 'aws-cdk-lib/assertions';
import { ConfigError } from '../lib/config';
import { actionsOf, logicalId, onlyResource, resourcesOfType, synth } from './helpers';

function nlbIngress(context: Record<string, unknown>): unknown[] {
  const { template, stack } = synth(context);
  const sg = resourcesOfType(template, 'AWS::EC2::SecurityGroup').find((s) => s.id === logicalId(stack.nlbSecurityGroup));
  assert.ok(sg);
  return sg.resource.Properties?.SecurityGroupIngress;
}

function pinnedAddresses(context: Record<string, unknown>): { mountTarget: string; target: string } {
  const { template } = synth(context);
  const mt = onlyResource(template, 'AWS::S3Files::MountTarget').resource.Properties?.Ipv4Address;
  const tg = onlyResource(template, 'AWS::ElasticLoadBalancingV2::TargetGroup').resource.Properties?.Targets;
  assert.equal(tg.length, 1);
  return { mountTarget: mt, target: tg[0].Id };
}

describe('allowedCidr (required)', () => {
  it('missing: synthesis fails with a message that names the parameter and shows how to set it', () => {
    assert.throws(
      () => synth({ allowedCidr: undefined }),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError, `expected ConfigError, got ${error}`);
        assert.match(error.message, /missing required context parameter "allowedCidr"/);
        assert.match(error.message, /-c allowedCidr=/);
        assert.match(error.message, /no default/);
        return true;
      },
    );
  });

  it('empty or blank: same failure, never a silent 0.0.0.0/0', () => {
    for (const value of ['', '   ', ' , ']) {
      assert.throws(() => synth({ allowedCidr: value }), /allowedCidr/, `value ${JSON.stringify(value)}`);
    }
  });

  it('malformed: rejected with the reason', () => {
    assert.throws(() => synth({ allowedCidr: 'my-laptop' }), /"my-laptop" is not an IPv4 CIDR block/);
    assert.throws(() => synth({ allowedCidr: '300.0.113.0/24' }), /invalid IPv4 address/);
    assert.throws(() => synth({ allowedCidr: '203.0.113.0/33' }), /prefix length above 32/);
    assert.throws(() => synth({ allowedCidr: '2001:db8::/32' }), /not an IPv4 CIDR block/);
    assert.throws(() => synth({ allowedCidr: 42 }), /must be a string or a list of strings/);
  });

  it('host bits set: rejected with the network it probably meant', () => {
    assert.throws(() => synth({ allowedCidr: '203.0.113.7/24' }), /did you mean 203\.0\.113\.0\/24\?/);
  });

  it('a bare address means that one host (/32)', () => {
    assert.deepEqual(nlbIngress({ allowedCidr: '198.51.100.7' }), [
      { CidrIp: '198.51.100.7/32', Description: 'NFS over TLS from 198.51.100.7/32', FromPort: 2049, ToPort: 2049, IpProtocol: 'tcp' },
    ]);
  });

  it('several comma-separated blocks (or a JSON list in cdk.json) give one rule each, duplicates dropped', () => {
    const expected = ['198.51.100.7/32', '203.0.113.0/24'];
    for (const value of ['198.51.100.7/32, 203.0.113.0/24,198.51.100.7/32', ['198.51.100.7/32', '203.0.113.0/24']]) {
      const rules = nlbIngress({ allowedCidr: value }) as Array<{ CidrIp: string; FromPort: number; ToPort: number }>;
      assert.deepEqual(rules.map((r) => r.CidrIp), expected);
      for (const rule of rules) assert.deepEqual([rule.FromPort, rule.ToPort], [2049, 2049]);
    }
  });

  it('0.0.0.0/0 only when asked for explicitly, and then with a warning', () => {
    const { stack, template } = synth({ allowedCidr: '0.0.0.0/0' });
    template.hasResourceProperties('AWS::EC2::SecurityGroup', {
      SecurityGroupIngress: [Match.objectLike({ CidrIp: '0.0.0.0/0', FromPort: 2049 })],
    });
    Annotations.fromStack(stack).hasWarning('*', Match.stringLikeRegexp('open to the whole internet'));

    const quiet = synth();
    Annotations.fromStack(quiet.stack).hasNoWarning('*', Match.stringLikeRegexp('open to the whole internet'));
  });
});

describe('mountTargetIp', () => {
  it('an explicit address is used for both the mount target and the NLB target', () => {
    assert.deepEqual(pinnedAddresses({ mountTargetIp: '10.20.0.57' }), { mountTarget: '10.20.0.57', target: '10.20.0.57' });
  });

  it('follows a custom vpcCidr: default host .100 of its first /24', () => {
    const { template } = synth({ vpcCidr: '172.31.128.0/20' });
    assert.equal(onlyResource(template, 'AWS::EC2::VPC').resource.Properties?.CidrBlock, '172.31.128.0/20');
    assert.equal(onlyResource(template, 'AWS::EC2::Subnet').resource.Properties?.CidrBlock, '172.31.128.0/24');
    assert.deepEqual(pinnedAddresses({ vpcCidr: '172.31.128.0/20' }), { mountTarget: '172.31.128.100', target: '172.31.128.100' });
  });

  it('an address AWS cannot assign in the subnet is rejected at synth time', () => {
    assert.throws(() => synth({ mountTargetIp: '10.20.1.10' }), /10\.20\.1\.10 is not inside the subnet 10\.20\.0\.0\/24/);
    assert.throws(() => synth({ mountTargetIp: '10.20.0.0' }), /first four addresses/);
    assert.throws(() => synth({ mountTargetIp: '10.20.0.3' }), /first four addresses/);
    assert.throws(() => synth({ mountTargetIp: '10.20.0.255' }), /last address/);
    assert.throws(() => synth({ mountTargetIp: '10.20.0.256' }), /not an IPv4 address/);
  });

  it('the edges of the usable range are accepted', () => {
    assert.equal(pinnedAddresses({ mountTargetIp: '10.20.0.4' }).mountTarget, '10.20.0.4');
    assert.equal(pinnedAddresses({ mountTargetIp: '10.20.0.254' }).mountTarget, '10.20.0.254');
  });

  it('vpcCidr outside /16../22 is rejected', () => {
    assert.throws(() => synth({ vpcCidr: '10.0.0.0/8' }), /vpcCidr.*\/16 to a \/22/);
    assert.throws(() => synth({ vpcCidr: '10.20.0.0/24' }), /vpcCidr.*\/16 to a \/22/);
  });
});

describe('privateSubnets=true (production layout)', () => {
  it('puts the mount target in an isolated subnet with an S3 gateway endpoint, keeps the NLB public, still no NAT', () => {
    const { template, stack } = synth({ privateSubnets: 'true' });
    const subnets = resourcesOfType(template, 'AWS::EC2::Subnet');
    assert.equal(subnets.length, 2);
    const isolated = stack.vpc.isolatedSubnets;
    assert.equal(isolated.length, 1);
    const isolatedId = logicalId(isolated[0]);
    const publicId = logicalId(stack.vpc.publicSubnets[0]);
    assert.equal(subnets.find((s) => s.id === isolatedId)?.resource.Properties?.CidrBlock, '10.20.1.0/24');

    const mt = onlyResource(template, 'AWS::S3Files::MountTarget').resource.Properties ?? {};
    assert.deepEqual(mt.SubnetId, { Ref: isolatedId });
    assert.deepEqual(pinnedAddresses({ privateSubnets: 'true' }), { mountTarget: '10.20.1.100', target: '10.20.1.100' });

    const nlb = onlyResource(template, 'AWS::ElasticLoadBalancingV2::LoadBalancer').resource.Properties ?? {};
    assert.equal(nlb.Scheme, 'internet-facing');
    assert.deepEqual(nlb.Subnets, [{ Ref: publicId }]);

    const endpoint = onlyResource(template, 'AWS::EC2::VPCEndpoint').resource.Properties ?? {};
    assert.equal(endpoint.VpcEndpointType, 'Gateway');
    assert.deepEqual(endpoint.ServiceName, { 'Fn::Join': ['', ['com.amazonaws.', { Ref: 'AWS::Region' }, '.s3']] });
    assert.deepEqual(endpoint.RouteTableIds, [{ Ref: logicalId(isolated[0].node.findChild('RouteTable')) }]);

    template.resourceCountIs('AWS::EC2::NatGateway', 0);
    // The isolated subnet has no default route at all.
    const routes = resourcesOfType(template, 'AWS::EC2::Route');
    assert.equal(routes.length, 1);
    assert.deepEqual(routes[0].resource.Properties?.RouteTableId, { Ref: logicalId(stack.vpc.publicSubnets[0].node.findChild('RouteTable')) });
  });

  it('accepts booleans from cdk.json and rejects anything that is not one', () => {
    assert.equal(resourcesOfType(synth({ privateSubnets: true }).template, 'AWS::EC2::Subnet').length, 2);
    assert.equal(resourcesOfType(synth({ privateSubnets: 'false' }).template, 'AWS::EC2::Subnet').length, 1);
    assert.throws(() => synth({ privateSubnets: 'maybe' }), /"privateSubnets" must be true or false/);
  });
});

describe('region', () => {
  it('no region anywhere: environment-agnostic stack, Region output is AWS::Region', () => {
    const { stack, template } = synth({ region: undefined }, {});
    assert.equal(stack.environment, 'aws://unknown-account/unknown-region');
    assert.deepEqual(template.toJSON().Outputs.Region.Value, { Ref: 'AWS::Region' });
  });

  it('falls back to CDK_DEFAULT_REGION (set by the CLI from the AWS profile); context wins over it', () => {
    assert.equal(synth({ region: undefined }, { CDK_DEFAULT_REGION: 'eu-west-1' }).stack.region, 'eu-west-1');
    assert.equal(synth({ region: 'ca-central-1' }, { CDK_DEFAULT_REGION: 'eu-west-1' }).stack.region, 'ca-central-1');
  });

  it('never pins an account (an account would make the VPC look AZs up in AWS)', () => {
    const { stack } = synth({}, { CDK_DEFAULT_ACCOUNT: '111122223333' });
    assert.equal(stack.environment, 'aws://unknown-account/ca-central-1');
  });

  it('rejects a region without S3 Files and a malformed one', () => {
    assert.throws(() => synth({ region: 'me-central-1' }), /S3 Files .* is not available in me-central-1/);
    assert.throws(() => synth({ region: 'Canada' }), /does not look like an AWS region/);
  });
});

describe('other parameters', () => {
  it('prefix: passed to the file system when it ends with "/", rejected otherwise', () => {
    synth({ prefix: 'shared/' }).template.hasResourceProperties('AWS::S3Files::FileSystem', { Prefix: 'shared/' });
    assert.throws(() => synth({ prefix: 'shared' }), /"prefix": "shared" must end with "\/"/);
    assert.throws(() => synth({ prefix: '/shared/' }), /"prefix"/);
  });

  it('stackName: names the stack, and must be a valid CloudFormation name', () => {
    assert.equal(synth({ stackName: 'MyMount' }).stack.stackName, 'MyMount');
    assert.equal(synth().stack.stackName, 'EfsProxyS3Files');
    assert.throws(() => synth({ stackName: 'my_mount' }), /not a valid CloudFormation stack name/);
  });

  it('clientRootAccess=true adds s3files:ClientRootAccess to the client policy', () => {
    const policy = onlyResource(synth({ clientRootAccess: 'true' }).template, 'AWS::IAM::ManagedPolicy');
    const statements = policy.resource.Properties?.PolicyDocument.Statement;
    assert.equal(statements.length, 1);
    assert.deepEqual(actionsOf(statements[0]), ['s3files:ClientMount', 's3files:ClientRootAccess', 's3files:ClientWrite']);
  });

  it('clientDirectS3Read=true adds read-only object access to the bucket in the client policy', () => {
    const { template, stack } = synth({ clientDirectS3Read: 'yes' });
    const statements = onlyResource(template, 'AWS::IAM::ManagedPolicy').resource.Properties?.PolicyDocument.Statement;
    assert.equal(statements.length, 2);
    const direct = statements.find((s: any) => s.Sid === 'DirectS3Read');
    assert.deepEqual(actionsOf(direct), ['s3:GetObject', 's3:GetObjectVersion']);
    assert.deepEqual(direct.Resource, { 'Fn::Join': ['', [{ 'Fn::GetAtt': [logicalId(stack.bucket), 'Arn'] }, '/*']] });
  });
});
