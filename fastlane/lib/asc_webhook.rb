# frozen_string_literal: true

require "json"
require "uri"

# Logic of the fastlane lanes in ../Fastfile, kept free of fastlane so that plain
# Ruby tests can run it. It reads the webhook event, chooses what to do, builds
# the App Store Connect URL to fetch, and turns the build upload into deliver
# options.
module AscWebhook
  # Missing or invalid input. The message names the input and how to fix it.
  class Error < StandardError; end

  DEFAULT_API_BASE = "https://api.appstoreconnect.apple.com"
  BUILD_UPLOAD_STATE_UPDATED = "buildUploadStateUpdated"
  SUBMIT_FOR_REVIEW = :submit_for_review
  NONE = :none

  # Variables that app_store_connect_api_key reads. The issuer ID is optional
  # because individual keys have none.
  KEY_VARIABLES = %w[APP_STORE_CONNECT_API_KEY_KEY_ID APP_STORE_CONNECT_API_KEY_KEY].freeze

  # buildUploads.attributes.platform to deliver's `platform` option.
  PLATFORMS = {
    "IOS" => "ios",
    "MAC_OS" => "osx",
    "TV_OS" => "appletvos",
    "VISION_OS" => "xros"
  }.freeze

  # A resource path the lane may request: /v1/<resource type>/<id>. The id needs
  # a letter or digit, so "." and ".." cannot walk up to another path.
  RESOURCE_PATH = %r{\A/v1/[A-Za-z]+/[A-Za-z0-9._-]*[A-Za-z0-9][A-Za-z0-9._-]*\z}.freeze

  # One App Store Connect webhook event, from either the relay's client_payload or
  # the raw webhook body.
  Event = Struct.new(
    :type, :id, :old_state, :new_state, :resource_type, :resource_id, :resource_url,
    keyword_init: true
  )

  # Deliver's view of a build upload record.
  Upload = Struct.new(:id, :version, :build_number, :platform, :state, keyword_init: true)

  module_function

  # Reads the event from the `payload` option (JSON text), the `payload_file`
  # option, or the GitHub event file, in that order.
  def load_event(payload: nil, payload_file: nil, event_path: nil)
    if present?(payload)
      return event_from_document(parse_json(payload, "payload"), "payload")
    end
    if present?(payload_file)
      return event_from_document(read_json(payload_file, "payload_file"), payload_file)
    end
    if present?(event_path)
      return event_from_document(read_json(event_path, "GITHUB_EVENT_PATH"), event_path)
    end

    raise Error, "no webhook event given: pass payload:<JSON> or payload_file:<path>, " \
                 "or run inside GitHub Actions where GITHUB_EVENT_PATH is set"
  end

  # Accepts a GitHub event document (repository_dispatch with `client_payload`,
  # or a workflow_dispatch replay with `inputs.payload` as JSON text), a relay
  # client_payload, or a raw App Store Connect webhook body.
  def event_from_document(document, source)
    raise Error, "#{source}: expected a JSON object, got #{document.class}" unless document.is_a?(Hash)

    if document["client_payload"].is_a?(Hash)
      return event_from_client_payload(document["client_payload"], source)
    end

    inputs = document["inputs"]
    if inputs.is_a?(Hash) && inputs.key?("payload")
      replay = parse_json(inputs["payload"].to_s, "#{source} inputs.payload")
      return event_from_document(replay, "#{source} inputs.payload")
    end

    return event_from_body(document, source) if document["data"].is_a?(Hash)
    return event_from_client_payload(document, source) if document["event"].is_a?(String)

    raise Error, "#{source}: not an App Store Connect event: expected a webhook body " \
                 "with 'data' or a relay client_payload with 'event'; found keys " \
                 "#{document.keys.sort.inspect}"
  end

  def event_from_client_payload(payload, source)
    unless present?(payload["event"])
      raise Error, "#{source}: client_payload has no 'event' string"
    end

    resource = payload["resource"].is_a?(Hash) ? payload["resource"] : {}
    Event.new(
      type: payload["event"],
      id: payload["id"],
      old_state: payload["old_state"],
      new_state: payload["new_state"],
      resource_type: resource["type"],
      resource_id: resource["id"],
      resource_url: resource["url"]
    )
  end

  def event_from_body(body, source)
    data = body["data"]
    raise Error, "#{source}: webhook body has no data.type" unless present?(data["type"])

    attributes = data["attributes"].is_a?(Hash) ? data["attributes"] : {}
    instance = data.dig("relationships", "instance")
    instance = {} unless instance.is_a?(Hash)
    # Background-asset events put type and id on the instance itself.
    target = instance["data"].is_a?(Hash) ? instance["data"] : instance
    links = instance["links"].is_a?(Hash) ? instance["links"] : {}

    Event.new(
      type: data["type"],
      id: data["id"],
      old_state: attributes["oldState"] || attributes["oldValue"],
      new_state: attributes["newState"] || attributes["newValue"],
      resource_type: target["type"],
      resource_id: target["id"],
      resource_url: links["self"]
    )
  end

  # Returns [action, reason]. Only a completed build upload leads to a submission.
  def action_for(event)
    unless event.type == BUILD_UPLOAD_STATE_UPDATED
      return [NONE, "event #{event.type} is not a build upload"]
    end
    unless event.new_state == "COMPLETE"
      return [NONE, "build upload state #{event.new_state.inspect} is not COMPLETE"]
    end

    [SUBMIT_FOR_REVIEW, "build upload #{event.resource_id} is complete"]
  end

  # Returns the URL to fetch the event's resource from: the path of the URL in
  # the event (or /v1/<type>/<id>) on api_base. Only the path is taken from the
  # event, so the API token is sent to api_base and nowhere else.
  def resource_url(event, api_base = DEFAULT_API_BASE)
    base = parse_api_base(api_base)
    path = if present?(event.resource_url)
             path_of(event.resource_url)
           elsif present?(event.resource_type) && present?(event.resource_id)
             "/v1/#{event.resource_type}/#{event.resource_id}"
           end
    raise Error, "the #{event.type} event names no resource (relationships.instance)" if path.nil?
    unless RESOURCE_PATH.match?(path)
      raise Error, "resource path #{path.inspect} is invalid: expected /v1/<type>/<id>"
    end

    "#{base}#{path}"
  end

  # Reads version, build number and platform from a GET /v1/buildUploads/<id>
  # response body.
  def build_upload(document)
    data = document.is_a?(Hash) ? document["data"] : nil
    unless data.is_a?(Hash) && data["type"] == "buildUploads"
      type = data.is_a?(Hash) ? data["type"].inspect : "nothing"
      raise Error, "expected a buildUploads resource, got #{type}"
    end

    attributes = data["attributes"] || {}
    version = attributes["cfBundleShortVersionString"]
    build_number = attributes["cfBundleVersion"]
    unless present?(version) && present?(build_number)
      raise Error, "build upload #{data['id']} has no cfBundleShortVersionString " \
                   "or cfBundleVersion yet: replay the event once App Store Connect shows the build"
    end

    state = attributes["state"]
    state = state["state"] if state.is_a?(Hash)
    platform = PLATFORMS.fetch(attributes["platform"] || "IOS") do |name|
      raise Error, "build upload platform #{name.inspect} is not one of #{PLATFORMS.keys.join(', ')}"
    end
    Upload.new(id: data["id"], version: version, build_number: build_number,
               platform: platform, state: state)
  end

  # Raises unless the upload record itself is COMPLETE, because the event can be
  # older than the record, for example when it is replayed by hand.
  def check_complete(upload)
    return if upload.state == "COMPLETE"

    raise Error, "build upload #{upload.id} is #{upload.state.inspect}, not COMPLETE: " \
                 "nothing to submit"
  end

  # Options for deliver (upload_to_app_store) that submit an already uploaded
  # build: no binary, metadata or screenshots, no precheck and no wait for
  # processing, because build_number names the build directly.
  def deliver_options(upload, app_identifier:, uses_non_exempt_encryption: nil)
    options = {
      app_identifier: app_identifier,
      app_version: upload.version,
      build_number: upload.build_number,
      platform: upload.platform,
      submit_for_review: true,
      skip_binary_upload: true,
      skip_metadata: true,
      skip_screenshots: true,
      skip_app_version_update: false,
      run_precheck_before_submit: false,
      force: true
    }
    unless uses_non_exempt_encryption.nil?
      options[:submission_information] = {
        export_compliance_uses_encryption: uses_non_exempt_encryption
      }
    end
    options
  end

  # Parses "true"/"false" (any case). Returns nil for nil or "", so the caller
  # can leave export compliance to Info.plist.
  def parse_optional_bool(value, name)
    text = value.to_s.strip.downcase
    return nil if text.empty?
    return true if text == "true"
    return false if text == "false"

    raise Error, "#{name} is #{value.inspect}: set it to true or false, or leave it empty"
  end

  # Names of the API key variables that are missing or empty.
  def missing_key_variables(env)
    KEY_VARIABLES.reject { |name| present?(env[name]) }
  end

  def present?(value)
    !value.nil? && !value.to_s.strip.empty?
  end

  def parse_json(text, source)
    JSON.parse(text)
  rescue JSON::ParserError => e
    raise Error, "#{source} is not valid JSON (#{e.message.lines.first.strip}): pass the JSON body unchanged"
  end

  def read_json(path, source)
    parse_json(File.read(path), "#{source} #{path}")
  rescue Errno::ENOENT
    raise Error, "#{source} #{path} not found"
  end

  def parse_api_base(api_base)
    uri = URI.parse(api_base.to_s)
    unless %w[http https].include?(uri.scheme) && present?(uri.host)
      raise Error, "API base #{api_base.inspect} is invalid: expected an http(s) URL " \
                   "such as #{DEFAULT_API_BASE}"
    end

    api_base.to_s.chomp("/")
  rescue URI::InvalidURIError
    raise Error, "API base #{api_base.inspect} is not a URL: expected one such as #{DEFAULT_API_BASE}"
  end

  def path_of(url)
    URI.parse(url).path
  rescue URI::InvalidURIError
    raise Error, "resource URL #{url.inspect} is not a URL"
  end
end
