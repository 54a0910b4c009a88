# The gateway image for Kubernetes: unprivileged nginx with the config rendered from the route
# table (deploy/gateway/nginx.k8s.conf), nginx's own errors as problem+json, the auth budget
# script (run by the image's entrypoint) and the built dashboard. Build from the repository
# root: docker build -f deploy/docker/gateway.Dockerfile -t smallshardz/gateway .

# The dashboard, built from its lock file (web/dashboard): only dist/ reaches the final image.
FROM node:20-alpine AS dashboard
WORKDIR /src
COPY web/dashboard/package.json web/dashboard/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY web/dashboard/ ./
RUN rm -rf dist && npm run build

FROM nginxinc/nginx-unprivileged:1.28-alpine
COPY deploy/gateway/nginx.k8s.conf /etc/nginx/nginx.conf
COPY deploy/gateway/problems.conf /etc/nginx/problems.conf
COPY --chmod=0755 deploy/gateway/auth-limit.sh /docker-entrypoint.d/30-auth-limit.sh
COPY --from=dashboard /src/dist/ /usr/share/nginx/html/
EXPOSE 8080
