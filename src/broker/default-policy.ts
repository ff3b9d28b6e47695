/**
 * The built-in `default` policy: the spec's "Minimal Policy Example" verbatim (mode: observe).
 * Used when ~/.substrate/policies/default.yaml does not exist; `substrate policy init` writes it.
 */
export const DEFAULT_POLICY_YAML = `# ~/.substrate/policies/default.yaml
id: default
name: Development Policy
mode: observe  # Start in observe mode, switch to enforce when ready

fs:
  read: ["/**"]  # Read anything
  write:
    - "\$PROJECT/**"  # Write only in project
    - "/tmp/**"
    - "\$HOME/.cache/**"
    - "\$HOME/.npm/**"
    - "\$HOME/.cargo/**"

net:
  allowed:
    - github.com
    - registry.npmjs.org
    - pypi.org
    - crates.io
    - pkg.go.dev
  dns:
    pinned: true           # Pin to 127.0.0.53 stub resolver
    refresh_secs: 60       # Refresh IP sets every minute
  egress_budget:
    bytes_per_sec: 10485760  # 10 MB/s
    total_bytes: 1073741824  # 1 GB total per session

commands:
  denied:
    - "sudo *"
    - "rm -rf /"
    - "chmod 777 *"
    - "curl * | sh"  # Prevent curl | bash patterns
  isolated:  # Run these in ephemeral overlayfs
    - "pip install *"
    - "npm install *"
    - "cargo install *"
    - "go get *"
    - "gem install *"

world:
  reuse_session: true
  isolate_network: true
  enable_preload: false  # Enable when ready for telemetry
  limits:
    cpu: "2"      # 2 CPUs
    memory: "2Gi" # 2 GB RAM

approval:
  interactive: true
  auto_approve:
    - "git *"
    - "cargo build"
    - "cargo test"
    - "npm test"
    - "make"

# Privacy settings for graph database
privacy:
  ignore_paths:
    - "~/.ssh"
    - "~/Library"
    - "**/.env"
    - "**/secrets"
  hash_code_only: true
  index_user_docs: false
`;
