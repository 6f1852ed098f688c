/**
 * The synthesized template of the default deployment
 * (`cdk synth -c allowedCidr=203.0.113.0/24 -c region=ca-central-1`):
 * every resource, property, dependency and output that the S3 Files mount
 * from outside AWS depends on.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Match } from 'aws-cdk-lib/assertions';
import { actionsOf, logicalId, onlyResource, resourcesOfType, synthDefault } from './helpers';

describe('network', () => {
  it('is one VPC with one public subnet, an internet gateway and no NAT', () => {
    const { template, stack } = synthDefault();
    const vpc = onlyResource(template, 'AWS::EC2::VPC');
    assert.equal(vpc.resource.Properties?.CidrBlock, '10.20.0.0/16');

    const subnet = onlyResource(template, 'AWS::EC2::Subnet');
    assert.equal(subnet.id, logicalId(stack.vpc.publicSubnets[0]));
    assert.equal(subnet.resource.Properties?.CidrBlock, '10.20.0.0/24');
    assert.equal(subnet.resource.Properties?.MapPublicIpOnLaunch, false);

    const igw = onlyResource(template, 'AWS::EC2::InternetGateway');
    const attachment = onlyResource(template, 'AWS::EC2::VPCGatewayAttachment');
    assert.deepEqual(attachment.resource.Properties?.InternetGatewayId, { Ref: igw.id });
    template.hasResourceProperties('AWS::EC2::Route', {
      DestinationCidrBlock: '0.0.0.0/0',
      GatewayId: { Ref: igw.id },
    });

    template.resourceCountIs('AWS::EC2::NatGateway', 0);
    template.resourceCountIs('AWS::EC2::EIP', 0);
    template.resourceCountIs('AWS::EC2::VPCEndpoint', 0);
  });

  it('needs no context lookups, so synthesis never calls AWS', () => {
    const { app } = synthDefault();
    const assembly = app.synth();
    assert.equal(assembly.manifest.missing, undefined, 'the app asked for context that only AWS can provide');
    // Availability zone comes from Fn::GetAZs at deploy time, not a lookup.
    const { template } = synthDefault();
    const subnet = onlyResource(template, 'AWS::EC2::Subnet');
    assert.deepEqual(subnet.resource.Properties?.AvailabilityZone, { 'Fn::Select': [0, { 'Fn::GetAZs': '' }] });
  });
});

describe('bucket', () => {
  it('is versioned, encrypted, private, TLS-only and retained', () => {
    const { template, stack } = synthDefault();
    const bucket = onlyResource(template, 'AWS::S3::Bucket');
    assert.equal(bucket.id, logicalId(stack.bucket));
    const props = bucket.resource.Properties ?? {};
    assert.deepEqual(props.VersioningConfiguration, { Status: 'Enabled' });
    assert.deepEqual(props.BucketEncryption, {
      ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }],
    });
    assert.deepEqual(props.PublicAccessBlockConfiguration, {
      BlockPublicAcls: true,
      BlockPublicPolicy: true,
      IgnorePublicAcls: true,
      RestrictPublicBuckets: true,
    });
    assert.equal(bucket.resource.DeletionPolicy, 'Retain');
    assert.equal(bucket.resource.UpdateReplacePolicy, 'Retain');

    template.hasResourceProperties('AWS::S3::BucketPolicy', {
      Bucket: { Ref: bucket.id },
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
        ]),
      },
    });
  });
});

describe('S3 Files service role', () => {
  it('is assumable only by elasticfilesystem.amazonaws.com for this account\'s file systems', () => {
    const { template, stack } = synthDefault();
    const roles = resourcesOfType(template, 'AWS::IAM::Role').filter((r) => r.id === logicalId(stack.serviceRole));
    assert.equal(roles.length, 1);
    const statements = roles[0].resource.Properties?.AssumeRolePolicyDocument.Statement;
    assert.deepEqual(statements, [
      {
        Action: 'sts:AssumeRole',
        Effect: 'Allow',
        Principal: { Service: 'elasticfilesystem.amazonaws.com' },
        Condition: {
          StringEquals: { 'aws:SourceAccount': { Ref: 'AWS::AccountId' } },
          ArnLike: {
            'aws:SourceArn': {
              'Fn::Join': ['', ['arn:aws:s3files:ca-central-1:', { Ref: 'AWS::AccountId' }, ':file-system/*']],
            },
          },
        },
      },
    ]);
  });

  it('may list the bucket, read and write its objects, and manage only its own EventBridge rules', () => {
    const { template, stack } = synthDefault();
    const policy = resourcesOfType(template, 'AWS::IAM::Policy').find((p) => p.id === logicalId(stack.serviceRolePolicy));
    assert.ok(policy, 'service role policy missing');
    assert.deepEqual(policy.resource.Properties?.Roles, [{ Ref: logicalId(stack.serviceRole) }]);

    const bucketId = logicalId(stack.bucket);
    const bySid = new Map<string, any>(
      policy.resource.Properties?.PolicyDocument.Statement.map((s: any) => [s.Sid, s]),
    );
    assert.deepEqual([...bySid.keys()].sort(), ['BucketLevel', 'ManageOwnEventBridgeRules', 'ObjectLevel', 'ReadEventBridgeRules']);
    for (const statement of bySid.values()) assert.equal(statement.Effect, 'Allow');

    assert.deepEqual(actionsOf(bySid.get('BucketLevel')), ['s3:ListBucket*']);
    assert.deepEqual(bySid.get('BucketLevel').Resource, { 'Fn::GetAtt': [bucketId, 'Arn'] });

    assert.deepEqual(actionsOf(bySid.get('ObjectLevel')), [
      's3:AbortMultipartUpload',
      's3:DeleteObject*',
      's3:GetObject*',
      's3:List*',
      's3:PutObject*',
    ]);
    assert.deepEqual(bySid.get('ObjectLevel').Resource, {
      'Fn::Join': ['', [{ 'Fn::GetAtt': [bucketId, 'Arn'] }, '/*']],
    });

    const manage = bySid.get('ManageOwnEventBridgeRules');
    assert.deepEqual(actionsOf(manage), [
      'events:DeleteRule',
      'events:DisableRule',
      'events:EnableRule',
      'events:PutRule',
      'events:PutTargets',
      'events:RemoveTargets',
    ]);
    assert.deepEqual(manage.Resource, {
      'Fn::Join': ['', ['arn:aws:events:*:', { Ref: 'AWS::AccountId' }, ':rule/DO-NOT-DELETE-S3-Files*']],
    });
    assert.deepEqual(manage.Condition, { StringEquals: { 'events:ManagedBy': 'elasticfilesystem.amazonaws.com' } });

    const read = bySid.get('ReadEventBridgeRules');
    assert.deepEqual(actionsOf(read), [
      'events:DescribeRule',
      'events:ListRuleNamesByTarget',
      'events:ListRules',
      'events:ListTargetsByRule',
    ]);
    assert.deepEqual(read.Resource, { 'Fn::Join': ['', ['arn:aws:events:*:', { Ref: 'AWS::AccountId' }, ':rule/*']] });
  });
});

describe('file system', () => {
  it('takes the bucket ARN, not its name, and the service role ARN', () => {
    const { template, stack } = synthDefault();
    const fs = onlyResource(template, 'AWS::S3Files::FileSystem');
    const bucketId = logicalId(stack.bucket);
    // Ref on AWS::S3::Bucket is the bucket *name*; S3 Files rejects it.
    assert.notDeepEqual(fs.resource.Properties?.Bucket, { Ref: bucketId });
    assert.deepEqual(fs.resource.Properties?.Bucket, { 'Fn::GetAtt': [bucketId, 'Arn'] });
    assert.deepEqual(fs.resource.Properties?.RoleArn, { 'Fn::GetAtt': [logicalId(stack.serviceRole), 'Arn'] });
    assert.equal(fs.resource.Properties?.Prefix, undefined, 'default exposes the whole bucket');
  });

  it('depends on the role policy, not just the role', () => {
    const { template, stack } = synthDefault();
    const fs = onlyResource(template, 'AWS::S3Files::FileSystem');
    // The GetAtt on the role only orders the file system after the role;
    // without this DependsOn it could be created before the role may touch the bucket.
    assert.deepEqual(fs.resource.DependsOn, [logicalId(stack.serviceRolePolicy)]);
  });
});

describe('mount target and NLB', () => {
  it('mount target: file system id, the subnet, the mount-target SG and a pinned IPv4 address', () => {
    const { template, stack } = synthDefault();
    const mt = onlyResource(template, 'AWS::S3Files::MountTarget');
    const props = mt.resource.Properties ?? {};
    assert.deepEqual(props.FileSystemId, { 'Fn::GetAtt': [logicalId(stack.fileSystem), 'FileSystemId'] });
    assert.deepEqual(props.SubnetId, { Ref: logicalId(stack.vpc.publicSubnets[0]) });
    assert.deepEqual(props.SecurityGroups, [{ 'Fn::GetAtt': [logicalId(stack.mountTargetSecurityGroup), 'GroupId'] }]);
    assert.equal(props.IpAddressType, 'IPV4_ONLY');
    assert.equal(props.Ipv4Address, '10.20.0.100', 'default: host .100 of the 10.20.0.0/24 subnet');
  });

  it('NLB target group points at exactly the mount target\'s address on 2049', () => {
    const { template } = synthDefault();
    const mtIp = onlyResource(template, 'AWS::S3Files::MountTarget').resource.Properties?.Ipv4Address;
    const tg = onlyResource(template, 'AWS::ElasticLoadBalancingV2::TargetGroup');
    const props = tg.resource.Properties ?? {};
    assert.deepEqual(props.Targets, [{ Id: mtIp, Port: 2049 }]);
    assert.equal(props.TargetType, 'ip');
    assert.equal(props.Protocol, 'TCP');
    assert.equal(props.Port, 2049);
    assert.equal(props.HealthCheckProtocol, 'TCP');
    assert.deepEqual(
      props.TargetGroupAttributes.find((a: any) => a.Key === 'preserve_client_ip.enabled'),
      { Key: 'preserve_client_ip.enabled', Value: 'false' },
    );
  });

  it('NLB is internet-facing in the public subnet with the NLB SG, listens on TCP 2049, and waits for the mount target', () => {
    const { template, stack } = synthDefault();
    const nlb = onlyResource(template, 'AWS::ElasticLoadBalancingV2::LoadBalancer');
    const props = nlb.resource.Properties ?? {};
    assert.equal(props.Type, 'network');
    assert.equal(props.Scheme, 'internet-facing');
    assert.deepEqual(props.Subnets, [{ Ref: logicalId(stack.vpc.publicSubnets[0]) }]);
    assert.deepEqual(props.SecurityGroups, [{ 'Fn::GetAtt': [logicalId(stack.nlbSecurityGroup), 'GroupId'] }]);
    // The NLB's own interfaces must not grab the pinned address first.
    assert.ok(nlb.resource.DependsOn?.includes('MountTarget'), `NLB DependsOn ${nlb.resource.DependsOn}`);

    const listener = onlyResource(template, 'AWS::ElasticLoadBalancingV2::Listener');
    const tg = onlyResource(template, 'AWS::ElasticLoadBalancingV2::TargetGroup');
    const { Tags: _tags, ...listenerProps } = listener.resource.Properties ?? {};
    assert.deepEqual(listenerProps, {
      LoadBalancerArn: { Ref: nlb.id },
      Port: 2049,
      Protocol: 'TCP',
      DefaultActions: [{ Type: 'forward', TargetGroupArn: { Ref: tg.id } }],
    });
  });
});

describe('security groups', () => {
  it('NLB SG: 2049 in from allowedCidr only, out only to the mount-target SG on 2049', () => {
    const { template, stack } = synthDefault();
    const nlbSgId = logicalId(stack.nlbSecurityGroup);
    const mtSgId = logicalId(stack.mountTargetSecurityGroup);
    const sg = resourcesOfType(template, 'AWS::EC2::SecurityGroup').find((s) => s.id === nlbSgId);
    assert.ok(sg);
    assert.deepEqual(sg.resource.Properties?.SecurityGroupIngress, [
      { CidrIp: '203.0.113.0/24', Description: 'NFS over TLS from 203.0.113.0/24', FromPort: 2049, ToPort: 2049, IpProtocol: 'tcp' },
    ]);
    assert.equal(sg.resource.Properties?.SecurityGroupEgress, undefined, 'no allow-all egress');

    const egress = onlyResource(template, 'AWS::EC2::SecurityGroupEgress');
    assert.deepEqual(egress.resource.Properties?.GroupId, { 'Fn::GetAtt': [nlbSgId, 'GroupId'] });
    assert.deepEqual(egress.resource.Properties?.DestinationSecurityGroupId, { 'Fn::GetAtt': [mtSgId, 'GroupId'] });
    assert.equal(egress.resource.Properties?.IpProtocol, 'tcp');
    assert.equal(egress.resource.Properties?.FromPort, 2049);
    assert.equal(egress.resource.Properties?.ToPort, 2049);
  });

  it('mount-target SG: 2049 in only from the NLB SG, no egress', () => {
    const { template, stack } = synthDefault();
    const nlbSgId = logicalId(stack.nlbSecurityGroup);
    const mtSgId = logicalId(stack.mountTargetSecurityGroup);
    const sg = resourcesOfType(template, 'AWS::EC2::SecurityGroup').find((s) => s.id === mtSgId);
    assert.ok(sg);
    assert.equal(sg.resource.Properties?.SecurityGroupIngress, undefined, 'no inline (CIDR) ingress');
    // CDK's marker for "no egress": a rule that matches nothing.
    assert.deepEqual(sg.resource.Properties?.SecurityGroupEgress, [
      { CidrIp: '255.255.255.255/32', Description: 'Disallow all traffic', FromPort: 252, IpProtocol: 'icmp', ToPort: 86 },
    ]);

    const ingress = onlyResource(template, 'AWS::EC2::SecurityGroupIngress');
    const props = ingress.resource.Properties ?? {};
    assert.deepEqual(props.GroupId, { 'Fn::GetAtt': [mtSgId, 'GroupId'] });
    assert.deepEqual(props.SourceSecurityGroupId, { 'Fn::GetAtt': [nlbSgId, 'GroupId'] });
    assert.equal(props.IpProtocol, 'tcp');
    assert.equal(props.FromPort, 2049);
    assert.equal(props.ToPort, 2049);
    assert.equal(props.CidrIp, undefined);
  });

  it('no security group anywhere admits 0.0.0.0/0 by default', () => {
    const { template } = synthDefault();
    const json = JSON.stringify(template.toJSON().Resources);
    assert.ok(!json.includes('"CidrIp":"0.0.0.0/0"'), 'found an ingress/egress rule for 0.0.0.0/0');
  });
});

describe('client policy', () => {
  it('is a managed policy with exactly s3files:ClientMount and s3files:ClientWrite on the file system ARN', () => {
    const { template, stack } = synthDefault();
    const policy = onlyResource(template, 'AWS::IAM::ManagedPolicy');
    assert.equal(policy.id, logicalId(stack.clientPolicy));
    const statements = policy.resource.Properties?.PolicyDocument.Statement;
    assert.equal(statements.length, 1);
    assert.equal(statements[0].Effect, 'Allow');
    assert.deepEqual(actionsOf(statements[0]), ['s3files:ClientMount', 's3files:ClientWrite']);
    assert.deepEqual(statements[0].Resource, { 'Fn::GetAtt': [logicalId(stack.fileSystem), 'FileSystemArn'] });
    assert.equal(policy.resource.Properties?.Roles, undefined, 'attached to nobody: the user attaches it');
  });
});

describe('outputs', () => {
  it('has everything docker-mount.sh up needs, with the right values', () => {
    const { template, stack } = synthDefault();
    const outputs = template.toJSON().Outputs as Record<string, { Value: unknown }>;
    for (const name of ['NlbDns', 'BucketName', 'FileSystemId', 'MountTargetAzId', 'Region', 'ClientPolicyArn']) {
      assert.ok(outputs[name], `missing output ${name}`);
    }
    assert.deepEqual(outputs.NlbDns.Value, { 'Fn::GetAtt': [logicalId(stack.nlb), 'DNSName'] });
    assert.deepEqual(outputs.BucketName.Value, { Ref: logicalId(stack.bucket) });
    // Ref on the file system is its ARN; the output must be the fs-... id.
    assert.deepEqual(outputs.FileSystemId.Value, { 'Fn::GetAtt': ['FileSystem', 'FileSystemId'] });
    assert.deepEqual(outputs.MountTargetAzId.Value, { 'Fn::GetAtt': ['MountTarget', 'AvailabilityZoneId'] });
    assert.equal(outputs.Region.Value, 'ca-central-1');
    assert.deepEqual(outputs.ClientPolicyArn.Value, { Ref: logicalId(stack.clientPolicy) });
    assert.equal(outputs.MountTargetIp.Value, '10.20.0.100');
    assert.deepEqual(outputs.MountTargetDnsName.Value, {
      'Fn::Join': [
        '.',
        [
          { 'Fn::GetAtt': ['MountTarget', 'AvailabilityZoneId'] },
          { 'Fn::GetAtt': ['FileSystem', 'FileSystemId'] },
          's3files.ca-central-1.on.aws',
        ],
      ],
    });
  });
});
