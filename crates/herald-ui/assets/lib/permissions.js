// What the page's token may do, from `GET /api/v1/auth/me`, mirroring the
// server's rule (herald-core `access.rs`) so the page hides what the server
// would refuse. The server decides; hiding a control is only courtesy.

export class Permissions {
  constructor(me) {
    this.me = me;
    this.caps = new Set(me.capabilities || []);
    this.readOnly = Boolean(me.readOnly);
  }

  has(...names) {
    return names.some((n) => this.caps.has(n));
  }

  get viewSecret() {
    return this.has("ViewEndpointSecret", "ManageEndpointSecret", "ManageEndpoint");
  }
  get rotateSecret() {
    return !this.readOnly && this.has("ManageEndpointSecret", "ManageEndpoint");
  }
  get manageEndpoint() {
    return !this.readOnly && this.has("ManageEndpoint");
  }
  get manageTransformation() {
    return !this.readOnly && this.has("ManageTransformations", "ManageEndpoint");
  }
  get createAttempts() {
    return !this.readOnly && this.has("CreateAttempts");
  }
  get isAdmin() {
    return this.me.kind === "admin";
  }
}
