// A one-cluster, one-user kubeconfig document for tests: the server URL and
// the user's lines (indented four spaces) are the parts tests vary.
export const kubeconfigDoc = (server: string, user: string) => `apiVersion: v1
clusters:
- name: c
  cluster:
    server: ${server}
contexts:
- name: x
  context: {cluster: c, user: u}
current-context: x
users:
- name: u
  user:
${user}
`;
